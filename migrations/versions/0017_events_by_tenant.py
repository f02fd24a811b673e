"""one tenant's audit events, for the customer viewer (a partial index: audit events only)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 15:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_events_workspace_id_tenant_id_id', 'events', ['workspace_id', 'tenant_id', 'id'],
                    postgresql_where=sa.text('tenant_id IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_events_workspace_id_tenant_id_id', table_name='events')
