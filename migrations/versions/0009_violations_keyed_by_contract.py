"""contract violations: the primary key is (contract_id, seq), the paging order, instead of seq
plus an index on (contract_id, seq): one index entry less per violating event

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 03:30:00
"""

from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_contract_violations_contract_id_seq', table_name='contract_violations')
    op.drop_constraint('pk_contract_violations', 'contract_violations', type_='primary')
    op.create_primary_key('pk_contract_violations', 'contract_violations', ['contract_id', 'seq'])


def downgrade() -> None:
    op.drop_constraint('pk_contract_violations', 'contract_violations', type_='primary')
    op.create_primary_key('pk_contract_violations', 'contract_violations', ['seq'])
    op.create_index('ix_contract_violations_contract_id_seq', 'contract_violations', ['contract_id', 'seq'])
