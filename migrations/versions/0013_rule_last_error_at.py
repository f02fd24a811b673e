"""forwarding rules remember when their last error happened (`last_error_at`), so that the
stats can say whether a rule is healthy now

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('forwarding_rules', sa.Column('last_error_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column('forwarding_rules', 'last_error_at')
