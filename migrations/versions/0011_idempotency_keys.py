"""idempotency keys of management calls (models.idempotency.IdempotencyKey)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 08:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'idempotency_keys',
        sa.Column('caller', sa.String(length=64), nullable=False),
        sa.Column('key', sa.String(length=255), nullable=False),
        sa.Column('fingerprint', sa.String(length=64), nullable=False),
        sa.Column('status', sa.SmallInteger(), nullable=True),
        sa.Column('content_type', sa.Text(), nullable=True),
        sa.Column('body', sa.LargeBinary(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.PrimaryKeyConstraint('caller', 'key', name=op.f('pk_idempotency_keys')),
    )


def downgrade() -> None:
    op.drop_table('idempotency_keys')
