"""`headwater`: the operator's command line for workspaces and master keys, and anyone's for
checking an audit log.

    headwater workspaces create NAME [--shell]  create a workspace and its first master key
    headwater workspaces list
    headwater keys create WORKSPACE_ID [--name NAME]
    headwater keys list WORKSPACE_ID
    headwater keys revoke WORKSPACE_ID KEY_ID
    headwater audit verify EXPORT --tree-head HEAD --public-key KEY [--removed REMOVED]
                           [--older OLD --consistency PROOF]

The first five talk to Postgres directly (DATABASE_URL, or the local stack's while `make run`
runs); `audit verify` reads only the files it is given.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from audit.verify import consistency_problems, export_problems
from models.db import create_engine, session_factory
from models.timestamps import iso
from models.workspaces import MasterKeyRepository, Workspace, WorkspaceRepository
from settings import Settings, get_settings

DEFAULT_WORKSPACE = "default"


async def in_transaction(settings: Settings, work: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
    engine = create_engine(settings, pool_size=1)
    try:
        async with session_factory(engine)() as session, session.begin():
            return await work(session)
    finally:
        await engine.dispose()


async def ensure_default_workspace(settings: Settings) -> tuple[Workspace, str | None]:
    """The `default` workspace, created with a master key on first run. The key's secret is
    returned only when it was just created (it cannot be shown again)."""

    async def work(session: AsyncSession) -> tuple[Workspace, str | None]:
        workspaces = WorkspaceRepository(session)
        existing = await workspaces.find_by_name(DEFAULT_WORKSPACE)
        if existing is not None:
            return existing, None
        workspace = await workspaces.create(DEFAULT_WORKSPACE)
        issued = await MasterKeyRepository(session).issue(workspace.id, "default")
        return workspace, issued.secret

    return await in_transaction(settings, work)


def _print_rows(rows: list[dict[str, Any]], columns: list[str]) -> None:
    widths = {c: max([len(c)] + [len(str(r.get(c) or "-")) for r in rows]) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row.get(c) or "-").ljust(widths[c]) for c in columns))


async def _workspaces_create(settings: Settings, args: argparse.Namespace) -> None:
    async def work(session: AsyncSession) -> None:
        workspace = await WorkspaceRepository(session).create(args.name)
        issued = await MasterKeyRepository(session).issue(workspace.id, "default")
        if args.shell:  # for `eval "$(headwater workspaces create NAME --shell)"`
            print(f"export HEADWATER_WORKSPACE={workspace.id}")
            print(f"export HEADWATER_KEY={issued.secret}")
            return
        print(f"workspace  {workspace.id}  ({workspace.name})")
        print(f"master key {issued.secret}")
        print("Store the key now: it is not shown again.")

    await in_transaction(settings, work)


async def _workspaces_list(settings: Settings, args: argparse.Namespace) -> None:
    async def work(session: AsyncSession) -> None:
        rows = [{"id": w.id, "name": w.name, "created_at": iso(w.created_at)}
                for w in await WorkspaceRepository(session).list()]
        _print_rows(rows, ["id", "name", "created_at"])

    await in_transaction(settings, work)


async def _keys_create(settings: Settings, args: argparse.Namespace) -> None:
    async def work(session: AsyncSession) -> None:
        if await WorkspaceRepository(session).get(args.workspace_id) is None:
            sys.exit(f"no workspace {args.workspace_id}")
        issued = await MasterKeyRepository(session).issue(args.workspace_id, args.name)
        print(f"key id     {issued.key.id}")
        print(f"master key {issued.secret}")
        print("Store the key now: it is not shown again.")

    await in_transaction(settings, work)


async def _keys_list(settings: Settings, args: argparse.Namespace) -> None:
    async def work(session: AsyncSession) -> None:
        rows = [{"id": k.id, "name": k.name, "prefix": k.prefix, "created_at": iso(k.created_at),
                 "last_used_at": iso(k.last_used_at), "revoked_at": iso(k.revoked_at)}
                for k in await MasterKeyRepository(session).list(args.workspace_id)]
        _print_rows(rows, ["id", "name", "prefix", "created_at", "last_used_at", "revoked_at"])

    await in_transaction(settings, work)


async def _keys_revoke(settings: Settings, args: argparse.Namespace) -> None:
    async def work(session: AsyncSession) -> None:
        key = await MasterKeyRepository(session).revoke(args.workspace_id, args.key_id)
        if key is None:
            sys.exit(f"no key {args.key_id} in workspace {args.workspace_id}")
        print(f"revoked {key.prefix}… at {iso(key.revoked_at)}")

    await in_transaction(settings, work)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"cannot read {path}: {exc}") from None


async def _audit_verify(settings: Settings, args: argparse.Namespace) -> None:
    """Offline: nothing here talks to a server or a database."""
    key = _load_json(args.public_key)
    public_key = base64.b64decode(key["public_key"] if isinstance(key, dict) else key)
    head = _load_json(args.tree_head)
    try:
        lines = args.export.read_bytes().split(b"\n")
    except OSError as exc:
        raise SystemExit(f"cannot read {args.export}: {exc}") from None
    if lines and lines[-1] == b"":
        lines.pop()  # the last line's newline
    removed = _load_json(args.removed)["ranges"] if args.removed is not None else None
    problems = export_problems(lines, head, public_key, removed)
    if args.older is not None:
        if args.consistency is None:
            raise SystemExit("--older needs --consistency (GET .../audit/consistency?first=OLD&second=NEW)")
        problems += consistency_problems(_load_json(args.older), head, _load_json(args.consistency)["proof"],
                                         public_key)
    if problems:
        raise SystemExit("audit verify FAILED:\n" + "\n".join(f"  - {problem}" for problem in problems))
    print(f"ok: {len(lines)} events match the tree head of {head['tree_size']} leaves signed at {head['timestamp']}"
          + (f"; the older head of {_load_json(args.older)['tree_size']} leaves is its prefix" if args.older else ""))


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="headwater", description="Manage Headwater workspaces and master keys.")
    groups = root.add_subparsers(dest="group", required=True)

    workspaces = groups.add_parser("workspaces", help="create and list workspaces").add_subparsers(
        dest="command", required=True)
    create = workspaces.add_parser("create", help="create a workspace and its first master key")
    create.add_argument("name")
    create.add_argument("--shell", action="store_true",
                        help="print `export HEADWATER_WORKSPACE=… HEADWATER_KEY=…` lines for a shell to eval")
    create.set_defaults(run=_workspaces_create)
    workspaces.add_parser("list", help="list workspaces").set_defaults(run=_workspaces_list)

    keys = groups.add_parser("keys", help="create, list and revoke master keys").add_subparsers(
        dest="command", required=True)
    key_create = keys.add_parser("create", help="create a master key")
    key_create.add_argument("workspace_id", type=uuid.UUID)
    key_create.add_argument("--name", default="cli")
    key_create.set_defaults(run=_keys_create)
    key_list = keys.add_parser("list", help="list a workspace's master keys")
    key_list.add_argument("workspace_id", type=uuid.UUID)
    key_list.set_defaults(run=_keys_list)
    key_revoke = keys.add_parser("revoke", help="revoke a master key")
    key_revoke.add_argument("workspace_id", type=uuid.UUID)
    key_revoke.add_argument("key_id", type=uuid.UUID)
    key_revoke.set_defaults(run=_keys_revoke)

    audit = groups.add_parser("audit", help="check an audit log offline").add_subparsers(dest="command", required=True)
    verify = audit.add_parser("verify", help="check an NDJSON export against a signed tree head (and an older head "
                                             "against it), offline")
    verify.add_argument("export", type=Path, help="GET .../events/export?tree_size=N, saved")
    verify.add_argument("--tree-head", type=Path, required=True, help="GET .../audit/tree-head?tree_size=N, saved")
    verify.add_argument("--public-key", type=Path, required=True, help="GET .../audit/public-key, saved")
    verify.add_argument("--removed", type=Path,
                        help="GET .../audit/removed?tree_size=N, saved: the leaves retention removed")
    verify.add_argument("--older", type=Path, help="an older tree head, saved, to check for consistency")
    verify.add_argument("--consistency", type=Path, help="GET .../audit/consistency?first=OLD&second=N, saved")
    verify.set_defaults(run=_audit_verify)
    return root


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    asyncio.run(args.run(get_settings(), args))


if __name__ == "__main__":
    main()
