"""hourly event volume, counted from the events already stored

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 00:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('event_volume_hourly',
    sa.Column('workspace_id', sa.Uuid(), nullable=False),
    sa.Column('hour_bucket', sa.DateTime(timezone=True), nullable=False),
    sa.Column('event_type', sa.String(length=16), nullable=False),
    sa.Column('event_name', sa.Text(), nullable=False),
    sa.Column('event_count', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_event_volume_hourly_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('workspace_id', 'hour_bucket', 'event_type', 'event_name', name=op.f('pk_event_volume_hourly'))
    )
    op.execute("""
        INSERT INTO event_volume_hourly (workspace_id, hour_bucket, event_type, event_name, event_count)
        SELECT workspace_id, date_trunc('hour', received_at, 'UTC'), type, coalesce(name, ''), count(*)
        FROM events GROUP BY 1, 2, 3, 4
    """)


def downgrade() -> None:
    op.drop_table('event_volume_hourly')
