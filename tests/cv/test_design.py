"""Tests for cv.design: recognising a slip's printed design without labels, and the ranking
penalty on pairs of one design."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from cv.design import (
    DESIGN_PENALTY,
    SIGNATURE_SHAPE,
    design_penalised,
    print_signature,
    same_design,
)
from cv.preprocess import load_image, preprocess
from tests.cv.test_preprocess import _scribble

SAMPLE_SET = Path(__file__).resolve().parents[2] / "sample_slips" / "set"


def _sample_slips(per_design: int = 5) -> tuple[list[np.ndarray], np.ndarray]:
    with (SAMPLE_SET / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    picked: dict[str, list[str]] = {}
    for r in rows:
        picked.setdefault(r["template"], [])
        if len(picked[r["template"]]) < per_design:
            picked[r["template"]].append(r["image"])
    images, designs = [], []
    for design, names in sorted(picked.items()):
        for name in names:
            images.append(load_image((SAMPLE_SET / name).read_bytes()))
            designs.append(design)
    return images, np.array(designs)


def test_slips_of_one_design_are_recognised_without_labels() -> None:
    images, designs = _sample_slips()
    assert len(set(designs.tolist())) >= 5  # the sample set spans the fit and unseen designs
    sigs = [preprocess(im).design for im in images]
    assert all(
        s is not None and s.shape == (SIGNATURE_SHAPE[0] * SIGNATURE_SHAPE[1],) for s in sigs
    )
    found = same_design(np.stack(sigs))  # type: ignore[arg-type]
    truth = designs[:, None] == designs[None, :]
    assert (found == truth).all()


def test_plain_crop_has_no_design_and_is_never_penalised() -> None:
    crop = preprocess(_scribble(seed=5))
    assert crop.quality.ok and crop.design is None
    images, _ = _sample_slips(per_design=2)
    sigs = [preprocess(im).design for im in images[:4]]
    nan = np.full(SIGNATURE_SHAPE[0] * SIGNATURE_SHAPE[1], np.nan, np.float32)
    stacked = np.stack([*sigs, nan, nan])  # type: ignore[list-item]
    found = same_design(stacked)
    assert not found[-2:].any() and not found[:, -2:].any()


def test_penalty_applies_to_same_design_pairs_only_and_keeps_the_diagonal() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random(SIGNATURE_SHAPE[0] * SIGNATURE_SHAPE[1]), rng.random(768)
    sigs = np.stack([a, a + 0.01, b, b + 0.01, np.full(768, np.nan)])
    scores = rng.random((5, 5)).astype(np.float32)
    out = design_penalised(scores, sigs)
    expected = scores.copy()
    for i, j in ((0, 1), (1, 0), (2, 3), (3, 2)):
        expected[i, j] -= DESIGN_PENALTY
    np.testing.assert_allclose(out, expected, atol=1e-7)


def test_one_design_collection_and_bad_input() -> None:
    sig = np.ones((3, 768))
    assert not same_design(sig).any()  # nothing to tell apart: no pair is penalised
    assert not same_design(np.zeros((0, 768))).any()
    with pytest.raises(ValueError):
        print_signature(np.zeros((0, 5), bool))
    with pytest.raises(ValueError):
        design_penalised(np.zeros((2, 2)), np.zeros((3, 768)))
