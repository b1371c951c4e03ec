"""Real handwriting written on slips (sample_slips.real_hands), on the shared UNIPEN crops."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from cv.features.style import letter_height
from cv.preprocess import binarise, estimate_stroke_width, flatten_background
from sample_slips.real_hands import (
    MIN_LETTER_HEIGHT,
    SLIP_SCALE,
    SLIP_STROKE_WIDTH,
    UNIPEN_DIR,
    by_writer_slips,
    hand_layer,
    write_real_set,
)

pytestmark = pytest.mark.skipif(
    not (UNIPEN_DIR / "labels.csv").exists(), reason="shared UNIPEN data not present"
)


def _rows() -> list[dict]:
    with (UNIPEN_DIR / "labels.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_by_writer_slips_puts_every_crop_on_exactly_one_slip_of_its_writer() -> None:
    rows = _rows()[:200]
    for per_slip in (1, 2, 3):
        slips = by_writer_slips(rows, per_slip)
        images = [r["image"] for s in slips for r in s]
        # each crop once: a short last chunk once joined the chunk before by aliasing it,
        # so a writer's two slips were one list twice (retrieval mAP 0.32 -> a false 0.89)
        assert sorted(images) == sorted(r["image"] for r in rows), per_slip
        assert len({id(s) for s in slips}) == len(slips)
        for s in slips:
            assert len({r["writer"] for r in s}) == 1
            assert len(s) >= min(per_slip, len([r for r in rows if r["writer"] == s[0]["writer"]]))


def test_hand_layer_draws_a_slip_sized_biro_stroke() -> None:
    crop = cv2.imread(str(UNIPEN_DIR / "images" / _rows()[0]["image"]), cv2.IMREAD_GRAYSCALE)
    layer = hand_layer(crop, SLIP_SCALE)
    assert layer.shape[0] == round(crop.shape[0] * SLIP_SCALE)
    ink = layer > 90
    original = estimate_stroke_width(binarise(flatten_background(crop)))
    width = estimate_stroke_width(ink)
    # thinned by the resize, thickened back to about a biro's on a slip
    assert abs(width - SLIP_STROKE_WIDTH) < 1.2, (width, original)
    assert original * SLIP_SCALE < width


def test_tiny_writing_is_brought_up_to_a_legible_size() -> None:
    crop = cv2.imread(str(UNIPEN_DIR / "images" / _rows()[0]["image"]), cv2.IMREAD_GRAYSCALE)
    normal = letter_height((hand_layer(crop, SLIP_SCALE) > 90).view(np.uint8))
    assert normal >= MIN_LETTER_HEIGHT  # as written: the factor alone
    tiny = cv2.resize(crop, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)
    layer = hand_layer(tiny, SLIP_SCALE)
    assert layer.shape[0] > round(tiny.shape[0] * SLIP_SCALE) + 5
    assert abs(letter_height((layer > 90).view(np.uint8)) - MIN_LETTER_HEIGHT) <= 3


def test_write_real_set_writes_a_labelled_set_with_masks(tmp_path: Path) -> None:
    rows = [r for r in _rows() if r["kind"] == "chars"][:4]
    slips = [[rows[0], rows[1]], [rows[2]], [rows[3]]]
    labels = write_real_set(slips, tmp_path, designs=["crown_classic"], seed=3)
    with labels.open() as fh:
        out = list(csv.DictReader(fh))
    assert [r["writer"] for r in out] == [s[0]["writer"] for s in slips]
    assert all(r["template"] == "crown_classic" for r in out)
    for r in out:
        image = cv2.imread(str(tmp_path / r["image"]), cv2.IMREAD_GRAYSCALE)
        stem = Path(r["image"]).stem
        hand = cv2.imread(str(tmp_path / "masks" / f"{stem}.png"), 0) > 0
        printed = cv2.imread(str(tmp_path / "masks" / f"{stem}_print.png"), 0) > 0
        assert image.shape == hand.shape == printed.shape
        assert 300 < hand.sum() < 0.05 * hand.size  # a few words, not the page
        assert printed.sum() > hand.sum()  # the form's print
        # the mask marks dark ink: handwriting pixels are darker than the paper around them
        assert np.median(image[hand]) < np.median(image[~hand & ~printed]) - 40
    blank = write_real_set(slips[:1], tmp_path / "blank", designs=["crown_classic"], printed=False)
    with blank.open() as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["template"] == "none"
    assert cv2.imread(str(tmp_path / "blank" / "masks" / "real_00000_print.png"), 0).max() == 0
