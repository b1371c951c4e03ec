"""events carry the feed's stable id; legs and price snapshots name it

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 11:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("external_id", sa.String(length=100), nullable=True))
        batch_op.create_unique_constraint("uq_events_external_id", ["external_id"])
    with op.batch_alter_table("legs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event_ref", sa.String(length=100), nullable=True))
        batch_op.create_index("ix_legs_event_ref", ["event_ref"], unique=False)
    with op.batch_alter_table("price_snapshots", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event_ref", sa.String(length=100), nullable=True))
        batch_op.create_index("ix_price_snapshots_event_ref", ["event_ref"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("price_snapshots", schema=None) as batch_op:
        batch_op.drop_index("ix_price_snapshots_event_ref")
        batch_op.drop_column("event_ref")
    with op.batch_alter_table("legs", schema=None) as batch_op:
        batch_op.drop_index("ix_legs_event_ref")
        batch_op.drop_column("event_ref")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_constraint("uq_events_external_id", type_="unique")
        batch_op.drop_column("external_id")
