"""events, results, factoring history, price snapshots, self-exclusion register

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 04:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_dt = sqlmodel.sql.sqltypes.UTCDateTime
_str = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sport", _str(length=64), nullable=False),
        sa.Column("name", _str(length=200), nullable=False),
        sa.Column("venue", _str(), nullable=True),
        sa.Column("start_time", _dt(), nullable=False),
        sa.Column(
            "status",
            sa.Enum("scheduled", "off", "result", "abandoned", name="eventstatus",
                    native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("place_fraction", sa.Float(), nullable=False),
        sa.Column("places", sa.Integer(), nullable=False),
        sa.Column("created_at", _dt(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("name", "start_time", name="uq_events_name_start"),
    )
    with op.batch_alter_table("events") as batch_op:
        batch_op.create_index(batch_op.f("ix_events_sport"), ["sport"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_name"), ["name"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_start_time"), ["start_time"], unique=False)

    op.create_table(
        "selection_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("selection", _str(length=200), nullable=False),
        sa.Column("selection_key", _str(length=200), nullable=False),
        sa.Column("result", _str(length=16), nullable=False),
        sa.Column("dead_heat", sa.Float(), nullable=False),
        sa.Column("rule4", sa.Float(), nullable=False),
        sa.Column("starting_price", sa.Float(), nullable=True),
        sa.Column("updated_at", _dt(), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"],
                                name=op.f("fk_selection_results_event_id_events")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_selection_results")),
        sa.UniqueConstraint("event_id", "selection_key", name="uq_results_sel"),
    )
    with op.batch_alter_table("selection_results") as batch_op:
        batch_op.create_index(batch_op.f("ix_selection_results_event_id"), ["event_id"])
        batch_op.create_index(batch_op.f("ix_selection_results_selection_key"), ["selection_key"])

    op.create_table(
        "factor_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("at", _dt(), nullable=False),
        sa.Column("actor", _str(length=100), nullable=False),
        sa.Column("reason", _str(length=500), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"],
                                name=op.f("fk_factor_changes_customer_id_customers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_factor_changes")),
    )
    with op.batch_alter_table("factor_changes") as batch_op:
        batch_op.create_index(batch_op.f("ix_factor_changes_customer_id"), ["customer_id"])

    op.create_table(
        "price_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("selection_key", _str(length=200), nullable=False),
        sa.Column("selection", _str(length=200), nullable=False),
        sa.Column("event", _str(length=200), nullable=False),
        sa.Column("bookmaker", _str(length=64), nullable=False),
        sa.Column("odds", sa.Float(), nullable=False),
        sa.Column("at", _dt(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_price_snapshots")),
    )
    with op.batch_alter_table("price_snapshots") as batch_op:
        batch_op.create_index(batch_op.f("ix_price_snapshots_selection_key"), ["selection_key"])
        batch_op.create_index(batch_op.f("ix_price_snapshots_at"), ["at"])

    op.create_table(
        "self_exclusions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", _str(length=32), nullable=False),
        sa.Column("reference", _str(length=64), nullable=False),
        sa.Column("name", _str(length=200), nullable=True),
        sa.Column("nominated_shops", sa.JSON(), nullable=True),
        sa.Column("starts_on", _dt(), nullable=False),
        sa.Column("ends_on", _dt(), nullable=True),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("reinstatement_requested_at", _dt(), nullable=True),
        sa.Column("created_at", _dt(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"],
                                name=op.f("fk_self_exclusions_customer_id_customers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_self_exclusions")),
        sa.UniqueConstraint("source", "reference", name="uq_self_exclusions_ref"),
    )
    with op.batch_alter_table("self_exclusions") as batch_op:
        batch_op.create_index(batch_op.f("ix_self_exclusions_customer_id"), ["customer_id"])


def downgrade() -> None:
    op.drop_table("self_exclusions")
    op.drop_table("price_snapshots")
    op.drop_table("factor_changes")
    op.drop_table("selection_results")
    op.drop_table("events")
