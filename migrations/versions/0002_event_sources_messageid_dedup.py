"""event sources, messageId dedup

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('event_sources',
    sa.Column('workspace_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_by', sa.Uuid(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_event_sources_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event_sources')),
    sa.UniqueConstraint('key', name=op.f('uq_event_sources_key'))
    )
    op.create_index(op.f('ix_event_sources_workspace_id'), 'event_sources', ['workspace_id'], unique=False)
    op.create_index('uq_events_workspace_id_message_id', 'events', ['workspace_id', 'message_id'], unique=True, postgresql_where=sa.text('message_id IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('uq_events_workspace_id_message_id', table_name='events', postgresql_where=sa.text('message_id IS NOT NULL'))
    op.drop_index(op.f('ix_event_sources_workspace_id'), table_name='event_sources')
    op.drop_table('event_sources')
