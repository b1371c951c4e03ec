"""The train/test split rule: fonts, designs and UNIPEN writers."""

from __future__ import annotations

import csv
from pathlib import Path

from sample_slips import splits
from sample_slips.writers import FONT_DIR, make_writer

REPO_ROOT = Path(__file__).resolve().parents[2]
UNIPEN = REPO_ROOT.parent / "shared" / "data" / "unipen-dev" / "labels.csv"


def test_fonts_disjoint_and_vendored_with_licences() -> None:
    assert not set(splits.FIT_FONTS) & set(splits.HELDOUT_FONTS)
    assert len(splits.HELDOUT_FONTS) >= 8
    assert len(splits.FIT_FONTS) + len(splits.HELDOUT_FONTS) >= 20
    vendored = {p.name for p in FONT_DIR.iterdir() if p.is_dir()}
    assert set(splits.ALL_FONTS) == vendored
    for name in vendored:
        assert (FONT_DIR / name / "LICENSE").stat().st_size > 1000
        assert list((FONT_DIR / name).glob("*.woff"))
    assert (FONT_DIR.parent / "print" / "LICENSE").exists()


def test_templates_disjoint() -> None:
    assert not set(splits.TEMPLATES_FIT) & set(splits.TEMPLATES_HELDOUT)
    assert splits.templates_for("fit") == splits.TEMPLATES_FIT
    assert set(splits.templates_for("heldout")) == set(
        splits.TEMPLATES_FIT + splits.TEMPLATES_HELDOUT
    )


def test_writers_use_their_split_fonts_and_share_them() -> None:
    held = [make_writer("heldout", i) for i in range(30)]
    fit = [make_writer("fit", i) for i in range(30)]
    assert {w.font for w in held} == set(splits.HELDOUT_FONTS)
    assert {w.font for w in fit} <= set(splits.FIT_FONTS)
    assert not {w.id for w in held} & {w.id for w in fit}
    assert make_writer("heldout", 3) == make_writer("heldout", 3)
    # Two writers with the same font differ in style.
    same = [w for w in held if w.font == held[0].font]
    assert len(same) >= 2 and same[0].slant != same[1].slant


def test_unipen_split_is_deterministic_and_balanced() -> None:
    ids = [f"w{i:03d}" for i in range(400)]
    fit, held = splits.unipen_split(ids)
    assert fit | held == set(ids) and not fit & held
    assert 160 <= len(held) <= 240
    # The rule looks at each id alone: a subset splits the same way.
    fit2, held2 = splits.unipen_split(ids[:50])
    assert fit2 == fit & set(ids[:50]) and held2 == held & set(ids[:50])


def test_unipen_split_on_the_real_writers() -> None:
    if not UNIPEN.exists():
        import pytest

        pytest.skip(f"{UNIPEN} not present")
    with UNIPEN.open(newline="") as fh:
        writers = sorted({r["writer"] for r in csv.DictReader(fh)})
    fit, held = splits.unipen_split(writers)
    assert 0.35 <= len(held) / len(writers) <= 0.65
