"""Rebuild the committed small set: ``python -m sample_slips.build_set``.

``sample_slips/set/`` = ``generate(set, writers=24, slips_per_writer=5, seed=2026,
split="heldout", masks=True)`` plus ``set/templates/`` (blank scans of every design).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from sample_slips.generate import generate, template_images

SET_DIR = Path(__file__).resolve().parent / "set"
SET_ARGS = {"writers": 24, "slips_per_writer": 5, "seed": 2026, "split": "heldout", "masks": True}


def build(out: Path = SET_DIR, *, jobs: int = 2) -> Path:
    """Regenerate the committed set into ``out`` (its old content is removed first)."""
    if out.exists():
        shutil.rmtree(out)
    generate(out, jobs=jobs, **SET_ARGS)  # type: ignore[arg-type]
    template_images(out / "templates")
    return out


if __name__ == "__main__":
    path = build(Path(sys.argv[1]) if len(sys.argv) > 1 else SET_DIR)
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    print(f"{path}: {size / 1e6:.1f} MB", file=sys.stderr)
