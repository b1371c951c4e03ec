"""bets.rules_pending_since: set when a bet is stored, cleared when its bet_placed rules ran

The sweeper re-sends the bet_placed rules of a bet whose rules have not run a grace period
after it was stored (publish lost: broker down, process killed between commit and publish).
A partial index holds only the bets still waiting, so it stays small and the sweeper's
oldest-first look-up is one short index range scan.

Bets stored before this migration count as evaluated (NULL): no backfill, so the sweeper does
not re-run a whole history of rules.  A bet_placed message of such a bet still queued when
the migration runs is skipped by the rules task (it runs a bet's rules only while the bet is
waiting for them), so deploy this with the rules queue drained.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 17:55:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WAITING = sa.text("rules_pending_since IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("bets", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("rules_pending_since", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
    op.create_index(
        "ix_bets_rules_pending_since",
        "bets",
        ["rules_pending_since"],
        unique=False,
        postgresql_where=_WAITING,
        sqlite_where=_WAITING,
    )


def downgrade() -> None:
    op.drop_index("ix_bets_rules_pending_since", table_name="bets")
    with op.batch_alter_table("bets", schema=None) as batch_op:
        batch_op.drop_column("rules_pending_since")
