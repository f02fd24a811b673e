"""console sessions (models.console_sessions.ConsoleSession)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 12:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'console_sessions',
        sa.Column('secret_hash', sa.String(length=64), nullable=False),
        sa.Column('master_key_id', sa.Uuid(), nullable=False),
        sa.Column('csrf_token', sa.String(length=64), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.ForeignKeyConstraint(['master_key_id'], ['master_keys.id'], ondelete='CASCADE',
                                name=op.f('fk_console_sessions_master_key_id_master_keys')),
        sa.PrimaryKeyConstraint('secret_hash', name=op.f('pk_console_sessions')),
    )
    op.create_index(op.f('ix_console_sessions_master_key_id'), 'console_sessions', ['master_key_id'])


def downgrade() -> None:
    op.drop_index(op.f('ix_console_sessions_master_key_id'), table_name='console_sessions')
    op.drop_table('console_sessions')
