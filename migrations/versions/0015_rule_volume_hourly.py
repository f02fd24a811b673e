"""what each forwarding rule did, by hour: the delivery funnel (models.forwarding.RuleVolumeHourly)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 12:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'rule_volume_hourly',
        sa.Column('rule_id', sa.Uuid(), nullable=False),
        sa.Column('hour_bucket', sa.DateTime(timezone=True), nullable=False),
        sa.Column('delivered', sa.BigInteger(), nullable=False, server_default='0'),
        sa.Column('dropped', sa.BigInteger(), nullable=False, server_default='0'),
        sa.Column('retried', sa.BigInteger(), nullable=False, server_default='0'),
        sa.Column('dead_lettered', sa.BigInteger(), nullable=False, server_default='0'),
        sa.ForeignKeyConstraint(['rule_id'], ['forwarding_rules.id'], ondelete='CASCADE',
                                name=op.f('fk_rule_volume_hourly_rule_id_forwarding_rules')),
        sa.PrimaryKeyConstraint('rule_id', 'hour_bucket', name=op.f('pk_rule_volume_hourly')),
    )


def downgrade() -> None:
    op.drop_table('rule_volume_hourly')
