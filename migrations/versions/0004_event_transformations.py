"""event transformations and their versions

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 23:55:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('event_transformations',
    sa.Column('workspace_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('source_code', sa.Text(), nullable=False),
    sa.Column('test_input', postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=True),
    sa.Column('test_output', postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=True),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('error_count', sa.Integer(), nullable=False),
    sa.Column('consecutive_failures', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_event_transformations_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event_transformations'))
    )
    op.create_index(op.f('ix_event_transformations_workspace_id'), 'event_transformations', ['workspace_id'], unique=False)
    op.create_table('event_transformation_versions',
    sa.Column('transformation_id', sa.Uuid(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('source_code', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['transformation_id'], ['event_transformations.id'], name=op.f('fk_event_transformation_versions_transformation_id_event_transformations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('transformation_id', 'version', name=op.f('pk_event_transformation_versions'))
    )


def downgrade() -> None:
    op.drop_table('event_transformation_versions')
    op.drop_index(op.f('ix_event_transformations_workspace_id'), table_name='event_transformations')
    op.drop_table('event_transformations')
