"""Procedurally randomised designs: fit-only, valid layouts, and no change to other sets."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from sample_slips import generate
from sample_slips.plan import make_plan
from sample_slips.templates import (
    DESIGNS,
    _random_design,
    design,
    is_random_design,
    layout,
    random_design_name,
)


@pytest.mark.parametrize("seed", range(12))
def test_random_design_has_every_field_the_writer_needs(seed: int) -> None:
    ink, lay = design(random_design_name(seed))
    assert ink.shape == (lay.height, lay.width) and ink.dtype == np.uint8
    assert not ink.flags.writeable
    for name in ("stake", "total", "type"):
        assert name in lay.fields
    for i in range(4):
        row = {k.split(".", 1)[1] for k in lay.fields if k.startswith(f"leg{i}.")}
        assert "line" in row or "selection" in row, row
        if "line" not in row:
            assert "event" in row or {"time", "meeting"} <= row, row
    for x0, y0, x1, y1 in lay.fields.values():
        assert 0 <= x0 < x1 <= lay.width and 0 <= y0 < y1 <= lay.height


def test_random_designs_differ_and_are_deterministic() -> None:
    a, b = design(random_design_name(1))[0], design(random_design_name(2))[0]
    assert a.shape != b.shape or not np.array_equal(a, b)
    np.testing.assert_array_equal(_random_design(1)[0], a)  # uncached redraw, same ink
    assert is_random_design("random-17") and not is_random_design("castle_ledger")
    assert not any(is_random_design(n) for n in DESIGNS)
    with pytest.raises(ValueError, match="template"):
        layout("random-x")


def test_fraction_zero_leaves_the_fit_plan_unchanged() -> None:
    a = make_plan(writers=6, slips_per_writer=3, seed=9, split="fit")
    b = make_plan(writers=6, slips_per_writer=3, seed=9, split="fit", random_designs=0.0)
    assert [(p.template, p.items) for p in a.slips] == [(p.template, p.items) for p in b.slips]


def test_random_designs_only_in_fit_sets(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fit split only"):
        make_plan(writers=2, slips_per_writer=1, seed=1, split="heldout", random_designs=0.5)
    with pytest.raises(ValueError, match="random_designs"):
        make_plan(writers=2, slips_per_writer=1, seed=1, split="fit", random_designs=1.5)
    out = generate(
        tmp_path / "f", writers=3, slips_per_writer=2, seed=4, split="fit", masks=True,
        random_designs=1.0,
    )  # fmt: skip
    with (out / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert all(is_random_design(r["template"]) for r in rows)
    assert len({r["template"] for r in rows}) == len(rows)
    stem = Path(rows[0]["image"]).stem
    assert (out / "masks" / f"{stem}.png").exists()
