"""retention: a workspace's retention_days, and the audit log's record of the leaves whose events
retention removed (models.audit.AuditRemoval)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 16:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('workspaces', sa.Column('retention_days', sa.Integer(), nullable=True))
    op.create_table(
        'audit_removals',
        sa.Column('workspace_id', sa.Uuid(), nullable=False),
        sa.Column('first_leaf', sa.BigInteger(), nullable=False),
        sa.Column('last_leaf', sa.BigInteger(), nullable=False),
        sa.Column('removed_at', sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], ondelete='CASCADE',
                                name=op.f('fk_audit_removals_workspace_id_workspaces')),
        sa.PrimaryKeyConstraint('workspace_id', 'first_leaf', name=op.f('pk_audit_removals')),
    )


def downgrade() -> None:
    op.drop_table('audit_removals')
    op.drop_column('workspaces', 'retention_days')
