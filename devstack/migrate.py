"""Apply Alembic migrations to a database (used by `make run` and the test session)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from settings import to_asyncpg_url

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(database_url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = to_asyncpg_url(database_url)
    config.attributes["configure_logger"] = False
    return config


def upgrade(database_url: str) -> None:
    command.upgrade(alembic_config(database_url), "head")
