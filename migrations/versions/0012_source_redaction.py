"""event sources say what their events have redacted on arrival: `audit` (audit events' free
text, the default), `all` (every event's properties, traits and context too) or `off`

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('event_sources', sa.Column('redact', sa.String(length=8), server_default='audit', nullable=False))


def downgrade() -> None:
    op.drop_column('event_sources', 'redact')
