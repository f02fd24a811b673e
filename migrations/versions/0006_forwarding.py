"""forwarding: destinations, rules, retries, dead letters, delivery attempts; events in commit order

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 01:10:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('events', sa.Column('commit_xid', sa.BigInteger(), server_default=sa.text('pg_current_xact_id()::text::bigint'), nullable=False))
    op.create_index('ix_events_workspace_id_commit_xid_id', 'events', ['workspace_id', 'commit_xid', 'id'], unique=False)
    op.create_table('destinations',
    sa.Column('workspace_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('config', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('signing_secret', sa.String(length=100), nullable=True),
    sa.Column('previous_secret', sa.String(length=100), nullable=True),
    sa.Column('previous_secret_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_destinations_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_destinations'))
    )
    op.create_index(op.f('ix_destinations_workspace_id'), 'destinations', ['workspace_id'], unique=False)
    op.create_table('forwarding_rules',
    sa.Column('workspace_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('destination_id', sa.Uuid(), nullable=False),
    sa.Column('event_types', postgresql.ARRAY(sa.Text()), nullable=False),
    sa.Column('event_names', postgresql.ARRAY(sa.Text()), nullable=False),
    sa.Column('transformation_id', sa.Uuid(), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('cursor_xid', sa.BigInteger(), nullable=False),
    sa.Column('cursor_id', sa.String(length=40), nullable=False),
    sa.Column('head_attempts', sa.Integer(), nullable=False),
    sa.Column('head_first_failed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('delivered', sa.BigInteger(), nullable=False),
    sa.Column('dead_lettered', sa.BigInteger(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('last_delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['destination_id'], ['destinations.id'], name=op.f('fk_forwarding_rules_destination_id_destinations'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['transformation_id'], ['event_transformations.id'], name=op.f('fk_forwarding_rules_transformation_id_event_transformations'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_forwarding_rules_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_forwarding_rules'))
    )
    op.create_index(op.f('ix_forwarding_rules_destination_id'), 'forwarding_rules', ['destination_id'], unique=False)
    op.create_index(op.f('ix_forwarding_rules_transformation_id'), 'forwarding_rules', ['transformation_id'], unique=False)
    op.create_index(op.f('ix_forwarding_rules_workspace_id'), 'forwarding_rules', ['workspace_id'], unique=False)
    op.create_table('forwarding_retries',
    sa.Column('rule_id', sa.Uuid(), nullable=False),
    sa.Column('event_id', sa.String(length=40), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('first_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_status', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['rule_id'], ['forwarding_rules.id'], name=op.f('fk_forwarding_retries_rule_id_forwarding_rules'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('rule_id', 'event_id', name=op.f('pk_forwarding_retries'))
    )
    op.create_index('ix_forwarding_retries_rule_id_next_attempt_at', 'forwarding_retries', ['rule_id', 'next_attempt_at'], unique=False)
    op.create_table('dead_letters',
    sa.Column('seq', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('rule_id', sa.Uuid(), nullable=False),
    sa.Column('event_id', sa.String(length=40), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_status', sa.Integer(), nullable=True),
    sa.Column('response_excerpt', sa.Text(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('first_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['rule_id'], ['forwarding_rules.id'], name=op.f('fk_dead_letters_rule_id_forwarding_rules'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_dead_letters')),
    sa.UniqueConstraint('id', name=op.f('uq_dead_letters_id'))
    )
    op.create_index('ix_dead_letters_rule_id_seq', 'dead_letters', ['rule_id', 'seq'], unique=False)
    op.create_index('uq_dead_letters_rule_id_event_id', 'dead_letters', ['rule_id', 'event_id'], unique=True)
    op.create_table('delivery_attempts',
    sa.Column('seq', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('rule_id', sa.Uuid(), nullable=False),
    sa.Column('attempted_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('event_ids', postgresql.ARRAY(sa.Text()), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('response_excerpt', sa.Text(), nullable=True),
    sa.Column('duration_ms', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['rule_id'], ['forwarding_rules.id'], name=op.f('fk_delivery_attempts_rule_id_forwarding_rules'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_delivery_attempts'))
    )
    op.create_index('ix_delivery_attempts_rule_id_seq', 'delivery_attempts', ['rule_id', 'seq'], unique=False)


def downgrade() -> None:
    op.drop_table('delivery_attempts')
    op.drop_table('dead_letters')
    op.drop_table('forwarding_retries')
    op.drop_table('forwarding_rules')
    op.drop_table('destinations')
    op.drop_index('ix_events_workspace_id_commit_xid_id', table_name='events')
    op.drop_column('events', 'commit_xid')
