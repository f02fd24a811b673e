"""the tamper-evident audit log: keys and sealing state, leaf chunks, complete subtrees, signed
tree heads, the check's findings (models.audit)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 14:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def workspace_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], ondelete='CASCADE',
                                   name=op.f(f'fk_{table}_workspace_id_workspaces'))


def upgrade() -> None:
    op.create_table(
        'audit_logs',
        sa.Column('workspace_id', sa.Uuid(), nullable=False),
        sa.Column('public_key', sa.LargeBinary(), nullable=False),
        sa.Column('private_key', sa.LargeBinary(), nullable=False),
        sa.Column('tree_size', sa.BigInteger(), nullable=False, server_default=sa.text('0')),
        sa.Column('frontier', sa.LargeBinary(), nullable=False, server_default=sa.text("''::bytea")),
        sa.Column('sealed_xid', sa.BigInteger(), nullable=False, server_default=sa.text('0')),
        sa.Column('sealed_id', sa.Text(), nullable=False, server_default=sa.text("''")),
        sa.Column('sealed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('checked_leaves', sa.BigInteger(), nullable=False, server_default=sa.text('0')),
        sa.Column('check_passes', sa.BigInteger(), nullable=False, server_default=sa.text('0')),
        sa.Column('checked_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        workspace_fk('audit_logs'),
        sa.PrimaryKeyConstraint('workspace_id', name=op.f('pk_audit_logs')),
    )
    op.create_table(
        'audit_chunks',
        sa.Column('workspace_id', sa.Uuid(), nullable=False),
        sa.Column('chunk_index', sa.BigInteger(), nullable=False),
        sa.Column('leaf_hashes', sa.LargeBinary(), nullable=False),
        sa.Column('event_ids', postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column('last_xid', sa.BigInteger(), nullable=False),
        sa.Column('last_id', sa.Text(), nullable=False),
        workspace_fk('audit_chunks'),
        sa.PrimaryKeyConstraint('workspace_id', 'chunk_index', name=op.f('pk_audit_chunks')),
    )
    op.create_index('ix_audit_chunks_workspace_id_last', 'audit_chunks', ['workspace_id', 'last_xid', 'last_id'])
    op.create_table(
        'audit_nodes',
        sa.Column('workspace_id', sa.Uuid(), nullable=False),
        sa.Column('level', sa.SmallInteger(), nullable=False),
        sa.Column('index', sa.BigInteger(), nullable=False),
        sa.Column('hash', sa.LargeBinary(), nullable=False),
        workspace_fk('audit_nodes'),
        sa.PrimaryKeyConstraint('workspace_id', 'level', 'index', name=op.f('pk_audit_nodes')),
    )
    op.create_table(
        'audit_tree_heads',
        sa.Column('workspace_id', sa.Uuid(), nullable=False),
        sa.Column('tree_size', sa.BigInteger(), nullable=False),
        sa.Column('root_hash', sa.LargeBinary(), nullable=False),
        sa.Column('timestamp', sa.String(length=24), nullable=False),
        sa.Column('signature', sa.LargeBinary(), nullable=False),
        workspace_fk('audit_tree_heads'),
        sa.PrimaryKeyConstraint('workspace_id', 'tree_size', name=op.f('pk_audit_tree_heads')),
    )
    op.create_table(
        'audit_mismatches',
        sa.Column('workspace_id', sa.Uuid(), nullable=False),
        sa.Column('leaf_index', sa.BigInteger(), nullable=False),
        sa.Column('event_id', sa.Text(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('found_at', sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        workspace_fk('audit_mismatches'),
        sa.PrimaryKeyConstraint('workspace_id', 'leaf_index', name=op.f('pk_audit_mismatches')),
    )


def downgrade() -> None:
    for table in ('audit_mismatches', 'audit_tree_heads', 'audit_nodes', 'audit_chunks', 'audit_logs'):
        op.drop_table(table)
