"""workspaces, master keys, events, streams, rate limits

Revision ID: 0001
Revises: 
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rate_limit_counters',
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('key', 'window_start', name=op.f('pk_rate_limit_counters'))
    )
    op.create_table('workspaces',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_workspaces'))
    )
    op.create_table('events',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('workspace_id', sa.Uuid(), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('source_id', sa.Uuid(), nullable=True),
    sa.Column('message_id', sa.Text(), nullable=True),
    sa.Column('user_id', sa.Text(), nullable=True),
    sa.Column('anonymous_id', sa.Text(), nullable=True),
    sa.Column('tenant_id', sa.Text(), nullable=True),
    sa.Column('actor_id', sa.Text(), nullable=True),
    sa.Column('category', sa.String(length=16), nullable=True),
    sa.Column('timestamp', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('body', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_events_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_events'))
    )
    op.create_index('ix_events_workspace_id_id', 'events', ['workspace_id', 'id'], unique=False)
    op.create_table('master_keys',
    sa.Column('workspace_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_master_keys_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_master_keys')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_master_keys_key_hash'))
    )
    op.create_index(op.f('ix_master_keys_workspace_id'), 'master_keys', ['workspace_id'], unique=False)
    op.create_table('streams',
    sa.Column('token', sa.Uuid(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('event_count', sa.Integer(), nullable=False),
    sa.Column('creator_ip', sa.String(length=64), nullable=True),
    sa.Column('claimed_by', sa.Uuid(), nullable=True),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['claimed_by'], ['workspaces.id'], name=op.f('fk_streams_claimed_by_workspaces'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('token', name=op.f('pk_streams'))
    )
    op.create_index(op.f('ix_streams_expires_at'), 'streams', ['expires_at'], unique=False)
    op.create_table('stream_events',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('token', sa.Uuid(), nullable=False),
    sa.Column('idempotency_key', sa.Text(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('body', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.ForeignKeyConstraint(['token'], ['streams.token'], name=op.f('fk_stream_events_token_streams'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stream_events'))
    )
    op.create_index('ix_stream_events_token_id', 'stream_events', ['token', 'id'], unique=False)
    op.create_index('uq_stream_events_token_idempotency_key', 'stream_events', ['token', 'idempotency_key'], unique=True, postgresql_where=sa.text('idempotency_key IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('uq_stream_events_token_idempotency_key', table_name='stream_events', postgresql_where=sa.text('idempotency_key IS NOT NULL'))
    op.drop_index('ix_stream_events_token_id', table_name='stream_events')
    op.drop_table('stream_events')
    op.drop_index(op.f('ix_streams_expires_at'), table_name='streams')
    op.drop_table('streams')
    op.drop_index(op.f('ix_master_keys_workspace_id'), table_name='master_keys')
    op.drop_table('master_keys')
    op.drop_index('ix_events_workspace_id_id', table_name='events')
    op.drop_table('events')
    op.drop_table('workspaces')
    op.drop_table('rate_limit_counters')
