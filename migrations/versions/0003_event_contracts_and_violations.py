"""event contracts and violations

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 22:52:28.544622
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('event_contracts',
    sa.Column('workspace_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('event_type', sa.String(length=16), nullable=False),
    sa.Column('event_name', sa.String(length=512), nullable=True),
    sa.Column('schema_definition', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('json_schema', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('enforcement_mode', sa.String(length=8), nullable=False),
    sa.Column('undeclared_fields', sa.String(length=8), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_event_contracts_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event_contracts'))
    )
    op.create_index(op.f('ix_event_contracts_workspace_id'), 'event_contracts', ['workspace_id'], unique=False)
    op.create_index('uq_event_contracts_active', 'event_contracts', ['workspace_id', 'event_type', sa.literal_column("coalesce(event_name, '')")], unique=True, postgresql_where=sa.text("status = 'active'"))
    op.create_table('contract_violations',
    sa.Column('seq', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('id', sa.Uuid(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('workspace_id', sa.Uuid(), nullable=False),
    sa.Column('contract_id', sa.Uuid(), nullable=False),
    sa.Column('event_id', sa.String(length=40), nullable=True),
    sa.Column('event_type', sa.String(length=16), nullable=False),
    sa.Column('event_name', sa.String(length=512), nullable=True),
    sa.Column('source_id', sa.Uuid(), nullable=True),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('action', sa.String(length=8), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_contract_violations_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_contract_violations')),
    sa.UniqueConstraint('id', name=op.f('uq_contract_violations_id'))
    )
    op.create_index('ix_contract_violations_contract_id_seq', 'contract_violations', ['contract_id', 'seq'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_contract_violations_contract_id_seq', table_name='contract_violations')
    op.drop_table('contract_violations')
    op.drop_index('uq_event_contracts_active', table_name='event_contracts', postgresql_where=sa.text("status = 'active'"))
    op.drop_index(op.f('ix_event_contracts_workspace_id'), table_name='event_contracts')
    op.drop_table('event_contracts')
