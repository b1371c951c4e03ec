"""model registry: versions, files, rollouts, evaluation reports, drift checks

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_str = sqlmodel.sql.sqltypes.AutoString
_time = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", _str(length=64), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=True),
        sa.Column("fit_data", sa.JSON(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("target_precision", sa.Float(), nullable=True),
        sa.Column("expected_recall", sa.Float(), nullable=True),
        sa.Column("reference", sa.JSON(), nullable=True),
        sa.Column("source", _str(length=1000), nullable=False),
        sa.Column("file_sha256", _str(length=64), nullable=False),
        sa.Column("trained_by", _str(length=100), nullable=False),
        sa.Column("note", _str(length=2000), nullable=True),
        sa.Column("created_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
    )
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_versions_version"), ["version"], unique=True)

    op.create_table(
        "model_files",
        sa.Column("version", _str(length=64), nullable=False),
        sa.Column("npz", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_model_files")),
    )

    op.create_table(
        "model_rollouts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", _str(length=64), nullable=False),
        sa.Column("previous_version", _str(length=64), nullable=True),
        sa.Column(
            "state",
            sa.Enum(
                "running",
                "finishing",
                "complete",
                "cancelled",
                "failed",
                name="rolloutstate",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("actor", _str(length=100), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("cursor", sa.Integer(), nullable=False),
        sa.Column("dispatched_at", _time(), nullable=True),
        sa.Column("started_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.Column("finished_at", _time(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("error", _str(length=1000), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_rollouts")),
    )
    with op.batch_alter_table("model_rollouts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_rollouts_version"), ["version"], unique=False)
        batch_op.create_index(batch_op.f("ix_model_rollouts_state"), ["state"], unique=False)

    op.create_table(
        "model_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", _str(length=64), nullable=False),
        sa.Column("name", _str(length=200), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_reports")),
        sa.UniqueConstraint("version", "name", name=op.f("uq_model_reports_version")),
    )
    with op.batch_alter_table("model_reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_reports_version"), ["version"], unique=False)

    op.create_table(
        "model_drift_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", _str(length=64), nullable=False),
        sa.Column("at", _time(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("statistic", sa.Float(), nullable=False),
        sa.Column("drifted", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_drift_checks")),
    )
    with op.batch_alter_table("model_drift_checks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_model_drift_checks_version"), ["version"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("model_drift_checks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_drift_checks_version"))
    op.drop_table("model_drift_checks")
    with op.batch_alter_table("model_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_reports_version"))
    op.drop_table("model_reports")
    with op.batch_alter_table("model_rollouts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_rollouts_state"))
        batch_op.drop_index(batch_op.f("ix_model_rollouts_version"))
    op.drop_table("model_rollouts")
    op.drop_table("model_files")
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_versions_version"))
    op.drop_table("model_versions")
