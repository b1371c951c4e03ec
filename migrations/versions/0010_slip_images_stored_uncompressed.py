"""slip_images.png kept out of line without PostgreSQL's own compression

A stored slip is a zlib-compressed PNG: pglz never shrinks it (stored size = byte length on
the sample slips) but tried on every upload, ~5 ms of database CPU per 377 KB slip (1.0 ms
with STORAGE EXTERNAL).  Same bytes stored; an upload kept as sent that is an uncompressed
PNG now takes its full size on disk.  PostgreSQL only (SQLite has no such setting).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 17:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE slip_images ALTER COLUMN png SET STORAGE EXTERNAL")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE slip_images ALTER COLUMN png SET STORAGE EXTENDED")
