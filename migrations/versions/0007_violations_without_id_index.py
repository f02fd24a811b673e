"""contract violations: no unique index on the random id (one index less per violating event)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 01:10:00
"""

from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint('uq_contract_violations_id', 'contract_violations', type_='unique')


def downgrade() -> None:
    op.create_unique_constraint('uq_contract_violations_id', 'contract_violations', ['id'])
