"""contract violations in batches: one row per contract and group commit, its violations in a
JSON array, instead of one row per violation (models.contracts.ContractViolationBatch)

Existing violations move over: those a group commit wrote share their contract and their
occurred_at (the transaction's time), so each such set becomes one batch, in seq order. A
violation's id is now its place in its batch (`vio_<seq>_<n>`): the old UUIDs are not kept.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 14:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

# The workspace-deletion trigger's function (migration 0008), for either table.
_DELETE_WORKSPACE_ROWS = """
    CREATE OR REPLACE FUNCTION delete_workspace_events() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM events WHERE workspace_id IN (SELECT id FROM gone);
        DELETE FROM {violations} WHERE workspace_id IN (SELECT id FROM gone);
        RETURN NULL;
    END $$
"""


def upgrade() -> None:
    op.create_table(
        'contract_violation_batches',
        sa.Column('seq', sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column('contract_id', sa.Uuid(), nullable=False),
        sa.Column('workspace_id', sa.Uuid(), nullable=False),
        sa.Column('event_type', sa.String(length=16), nullable=False),
        sa.Column('violation_count', sa.Integer(), nullable=False),
        sa.Column('violations', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column('occurred_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.PrimaryKeyConstraint('contract_id', 'seq', name=op.f('pk_contract_violation_batches')),
    )
    op.execute("""
        INSERT INTO contract_violation_batches (contract_id, workspace_id, event_type, violation_count, violations,
                                                occurred_at)
        SELECT contract_id, workspace_id, event_type, count(*),
               jsonb_agg(jsonb_build_array(event_id, event_name, source_id, path, kind, message, action)
                         ORDER BY seq),
               occurred_at
        FROM contract_violations
        GROUP BY contract_id, workspace_id, event_type, occurred_at
        ORDER BY min(seq)
    """)
    op.execute(_DELETE_WORKSPACE_ROWS.format(violations="contract_violation_batches"))
    op.drop_table('contract_violations')


def downgrade() -> None:
    op.create_table(
        'contract_violations',
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
        sa.PrimaryKeyConstraint('contract_id', 'seq', name=op.f('pk_contract_violations')),
    )
    op.execute("""
        INSERT INTO contract_violations (id, workspace_id, contract_id, event_id, event_type, event_name, source_id,
                                         path, kind, message, action, occurred_at)
        SELECT gen_random_uuid(), b.workspace_id, b.contract_id, v->>0, b.event_type, v->>1, (v->>2)::uuid,
               v->>3, v->>4, v->>5, v->>6, b.occurred_at
        FROM contract_violation_batches b, jsonb_array_elements(b.violations) WITH ORDINALITY AS item(v, n)
        ORDER BY b.seq, item.n
    """)
    op.execute(_DELETE_WORKSPACE_ROWS.format(violations="contract_violations"))
    op.drop_table('contract_violation_batches')
