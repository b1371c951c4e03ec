"""Realistic synthetic betting slips with known writers (generator + a small committed set).

Contract: ``generate(out_dir, *, writers, slips_per_writer, seed, split, masks, jobs,
progress) -> Path`` writes greyscale slip scans, ``labels.csv``, ``bets.json``,
``writers.json`` and optional ink masks; the same arguments give the same bytes.
"""

from pathlib import Path

from sample_slips import splits
from sample_slips.generate import generate, render_slip, template_images

SET_DIR = Path(__file__).resolve().parent / "set"

__all__ = ["SET_DIR", "generate", "render_slip", "splits", "template_images"]
