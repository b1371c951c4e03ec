"""drop ix_legs_selection_key: ix_legs_selection_event_bet (0012) starts with the same column

Every look-up by selection_key alone (exposure, liability, the rules) is served by the
prefix of the composite index of 0012, so the single-column index only cost writes: each
leg inserted updated both.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 21:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_legs_selection_key", table_name="legs")


def downgrade() -> None:
    op.create_index("ix_legs_selection_key", "legs", ["selection_key"], unique=False)
