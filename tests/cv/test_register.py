"""Tests for cv.register: design matching, homography, template print removal."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cv.preprocess import binarise, flatten_background
from cv.register import match_template, prepare_template, remove_template


def _design(seed: int, rows: int = 600, cols: int = 800) -> np.ndarray:
    """A blank 'form': frames, rules and random printed words (texture for ORB)."""
    rng = np.random.default_rng(seed)
    img = np.full((rows, cols), 240, np.uint8)
    cv2.rectangle(img, (20, 20), (cols - 20, rows - 20), 30, 3)
    for y in range(120, rows - 60, 80):
        cv2.line(img, (40, y), (cols - 40, y), 40, 2)
    for _ in range(25):
        x, y = int(rng.integers(40, cols - 200)), int(rng.integers(50, rows - 40))
        word = "".join(rng.choice(list("ABCDEFGHKLMNPRSTUVWXYZ0123456789"), 6))
        cv2.putText(img, word, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.7, 30, 2)
    return img


def _warp(
    img: np.ndarray, angle: float, scale: float, shift: tuple[float, float], border: int = 240
) -> np.ndarray:
    rows, cols = img.shape
    m = cv2.getRotationMatrix2D((cols / 2, rows / 2), angle, scale)
    m[:, 2] += shift
    return cv2.warpAffine(img, m, (cols, rows), borderValue=border)


def test_match_picks_the_right_design_and_homography() -> None:
    designs = [_design(s) for s in (1, 2, 3)]
    prepared = [prepare_template(d) for d in designs]
    slip = _warp(designs[1], 2.0, 0.97, (6.0, -4.0))
    idx, hmat, inliers = match_template(flatten_background(slip), prepared)
    assert idx == 1 and hmat is not None and inliers >= 20
    rows, cols = slip.shape
    m = cv2.getRotationMatrix2D((cols / 2, rows / 2), 2.0, 0.97)
    m[:, 2] += (6.0, -4.0)
    for pt in [(100.0, 100.0), (700.0, 500.0), (400.0, 300.0)]:
        want = m @ np.array([pt[0], pt[1], 1.0])
        got = hmat @ np.array([pt[0], pt[1], 1.0])
        assert np.allclose(got[:2] / got[2], want, atol=2.0)


def test_remove_template_drops_print_keeps_handwriting() -> None:
    design = _design(7)
    slip = design.copy()
    # Handwriting: a curved stroke crossing a rule, and a loop in free space.
    t = np.linspace(0, 1, 120)
    pts = np.stack([300 + 60 * t + 10 * np.sin(9 * t), 150 + 110 * t], 1).astype(np.int32)
    cv2.polylines(slip, [pts.reshape(-1, 1, 2)], False, 50, 3, cv2.LINE_AA)
    cv2.ellipse(slip, (600, 420), (22, 16), 0, 0, 360, 50, 3, cv2.LINE_AA)
    hand_true = (slip < 140) & ~(design < 140)
    slip = _warp(slip, -1.5, 1.0, (3.0, 2.0))
    hand_true = _warp(hand_true.astype(np.uint8) * 255, -1.5, 1.0, (3.0, 2.0), border=0) > 127
    print_true = _warp(design, -1.5, 1.0, (3.0, 2.0)) < 140
    flat = flatten_background(slip)
    ink = binarise(flat)
    kept = remove_template(flat, ink, templates=[design])
    # Handwriting away from print survives whole; where it crosses print, most of it does.
    near_print = cv2.dilate(print_true.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    free = hand_true & ink & ~near_print
    assert (kept & free).sum() >= 0.98 * free.sum()
    assert (kept & hand_true).sum() >= 0.85 * hand_true.sum()
    assert (kept & print_true & ~hand_true).sum() <= 0.02 * (print_true & ~hand_true).sum()


def test_no_matching_design_leaves_ink_unchanged() -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (300, 300)).astype(np.uint8)
    slip = _design(3)
    flat = flatten_background(slip)
    ink = binarise(flat)
    out = remove_template(flat, ink, templates=[np.full((300, 300), 240, np.uint8), noise])
    assert np.array_equal(out, ink)


def test_prepare_template_validates() -> None:
    with pytest.raises(ValueError, match="template"):
        prepare_template(np.zeros((10, 10, 3), np.uint8))


def test_generated_slip_registers_to_its_blank_design(tmp_path) -> None:
    from sample_slips.generate import generate, template_images

    generate(tmp_path / "s", writers=1, slips_per_writer=2, seed=5, split="heldout", masks=True)
    paths = template_images(tmp_path / "t", seed=9)
    names = [p.stem for p in paths]
    prepared = [prepare_template(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)) for p in paths]
    import csv

    with (tmp_path / "s" / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        img = cv2.imread(str(tmp_path / "s" / r["image"]), cv2.IMREAD_GRAYSCALE)
        idx, _, _ = match_template(flatten_background(img), prepared)
        assert names[idx] == r["template"]
