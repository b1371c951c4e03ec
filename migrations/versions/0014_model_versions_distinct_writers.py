"""model_versions.distinct_writers: the model's calibrated "different writers" bound

The mean cosine below which two groups of slips count as different writers
(`cv.cluster.distinct_writers_bound`, in the model file's calibration), copied to the registry
row so the rules engine reads it without loading the model file.  NULL: the model's file
carries no such bound (fitted before session 14) and the linked-accounts rule keeps its own
default.  Registering the model again fills it in.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 17:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("distinct_writers", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_column("distinct_writers")
