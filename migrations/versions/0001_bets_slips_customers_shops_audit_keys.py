"""bets slips customers shops audit keys

Revision ID: 0001
Revises:
Create Date: 2026-11-22 04:20:21.857344
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_PG_AUDIT = """
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'audit_log is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
"""


def _append_only_audit() -> None:
    """The audit log refuses UPDATE and DELETE in the database itself, not just in the API."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_AUDIT)
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
            )


def _drop_append_only_audit() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('entity', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('entity_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('remote_addr', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('before', sa.JSON(), nullable=True),
    sa.Column('after', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_entity_id'), ['entity_id'], unique=False)

    op.create_table('customers',
    sa.Column('external_ref', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('registered_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('status', sa.Enum('active', 'self_excluded', 'closed', name='customerstatus', native_enum=False, length=32), nullable=False),
    sa.Column('risk_category', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('stake_factor', sa.Float(), nullable=False),
    sa.Column('restricted_sports', sa.JSON(), nullable=True),
    sa.Column('restricted_price_types', sa.JSON(), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customers'))
    )
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customers_external_ref'), ['external_ref'], unique=True)
        batch_op.create_index(batch_op.f('ix_customers_risk_category'), ['risk_category'], unique=False)

    op.create_table('shops',
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('region', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shops'))
    )
    with op.batch_alter_table('shops', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_shops_code'), ['code'], unique=True)

    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('prefix', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('key_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('role', sa.Enum('shop', 'analyst', 'ml', 'admin', name='role', native_enum=False, length=32), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('revoked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_api_keys_shop_id_shops')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys'))
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_key_hash'), ['key_hash'], unique=True)

    op.create_table('bets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop_id', sa.Integer(), nullable=True),
    sa.Column('customer_id', sa.Integer(), nullable=True),
    sa.Column('placed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
    sa.Column('stake', sa.Numeric(precision=14, scale=2, asdecimal=False), nullable=False),
    sa.Column('total_stake', sa.Numeric(precision=14, scale=2, asdecimal=False), nullable=False),
    sa.Column('bet_type', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('each_way', sa.Boolean(), nullable=False),
    sa.Column('odds', sa.Float(), nullable=True),
    sa.Column('potential_return', sa.Numeric(precision=14, scale=2, asdecimal=False), nullable=True),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('sport', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('status', sa.Enum('open', 'won', 'lost', 'placed', 'void', name='betstatus', native_enum=False, length=32), nullable=False),
    sa.Column('returns', sa.Numeric(precision=14, scale=2, asdecimal=False), nullable=True),
    sa.Column('settled_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_bets_customer_id_customers')),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_bets_shop_id_shops')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bets'))
    )
    with op.batch_alter_table('bets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bets_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_bets_placed_at'), ['placed_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_bets_shop_id'), ['shop_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_bets_sport'), ['sport'], unique=False)
        batch_op.create_index(batch_op.f('ix_bets_status'), ['status'], unique=False)

    op.create_table('legs',
    sa.Column('sport', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('event', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('event_start', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('market', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('selection', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('odds', sa.Float(), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bet_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('selection_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.ForeignKeyConstraint(['bet_id'], ['bets.id'], name=op.f('fk_legs_bet_id_bets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_legs'))
    )
    with op.batch_alter_table('legs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_legs_bet_id'), ['bet_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_legs_selection_key'), ['selection_key'], unique=False)

    op.create_table('slips',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bet_id', sa.Integer(), nullable=False),
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('original_type', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('uploaded_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('uploaded_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('status', sa.Enum('pending', 'processing', 'ready', 'failed', name='slipstatus', native_enum=False, length=32), nullable=False),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['bet_id'], ['bets.id'], name=op.f('fk_slips_bet_id_bets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_slips')),
    sa.UniqueConstraint('bet_id', name='uq_slips_bet_id')
    )
    with op.batch_alter_table('slips', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_slips_sha256'), ['sha256'], unique=True)
        batch_op.create_index(batch_op.f('ix_slips_status'), ['status'], unique=False)

    op.create_table('slip_images',
    sa.Column('slip_id', sa.Integer(), nullable=False),
    sa.Column('png', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['slip_id'], ['slips.id'], name=op.f('fk_slip_images_slip_id_slips'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('slip_id', name=op.f('pk_slip_images'))
    )
    _append_only_audit()


def downgrade() -> None:
    _drop_append_only_audit()
    op.drop_table('slip_images')
    with op.batch_alter_table('slips', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_slips_status'))
        batch_op.drop_index(batch_op.f('ix_slips_sha256'))

    op.drop_table('slips')
    with op.batch_alter_table('legs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_legs_selection_key'))
        batch_op.drop_index(batch_op.f('ix_legs_bet_id'))

    op.drop_table('legs')
    with op.batch_alter_table('bets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bets_status'))
        batch_op.drop_index(batch_op.f('ix_bets_sport'))
        batch_op.drop_index(batch_op.f('ix_bets_shop_id'))
        batch_op.drop_index(batch_op.f('ix_bets_placed_at'))
        batch_op.drop_index(batch_op.f('ix_bets_customer_id'))

    op.drop_table('bets')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_key_hash'))

    op.drop_table('api_keys')
    with op.batch_alter_table('shops', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_shops_code'))

    op.drop_table('shops')
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customers_risk_category'))
        batch_op.drop_index(batch_op.f('ix_customers_external_ref'))

    op.drop_table('customers')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_entity_id'))
        batch_op.drop_index(batch_op.f('ix_audit_log_at'))
        batch_op.drop_index(batch_op.f('ix_audit_log_action'))

    op.drop_table('audit_log')
