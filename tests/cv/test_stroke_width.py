"""estimate_stroke_width: exact on clean strokes, robust to print the separator leaked."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from cv.preprocess import estimate_stroke_width


def _strokes(rows: int = 300, cols: int = 700, width: int = 3) -> np.ndarray:
    """Three lines of smooth curves (handwriting-like), as a bool ink mask."""
    img = np.zeros((rows, cols), np.uint8)
    for line in range(3):
        for k in range(8):
            t = np.linspace(0, 1, 40)
            xs = 30 + k * 80 + 45 * t
            ys = 50 + 95 * line + 25 * np.sin(2 * math.pi * t + k + line)
            pts = np.stack([xs, ys], axis=1).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(img, [pts], False, 1, width)
    return img > 0


def _pixel_mean_width(ink: np.ndarray) -> float:
    u8 = cv2.copyMakeBorder(ink.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    dist = cv2.distanceTransform(u8, cv2.DIST_L2, cv2.DIST_MASK_5)
    return 4.0 * float(dist[u8 > 0].mean()) - 2.0


def test_clean_strokes_match_the_pixel_mean() -> None:
    ink = _strokes(width=5)
    assert estimate_stroke_width(ink) == pytest.approx(_pixel_mean_width(ink), rel=1e-6)


def test_thick_hatching_and_frames_do_not_set_the_width() -> None:
    hand = _strokes(width=3)
    clean = estimate_stroke_width(hand)
    leaked = np.zeros((300, 1200), np.uint8)
    # A header block of diagonal hatching (////) and a logo, both over twice as thick as the
    # handwriting (within 2x, width cannot tell print from a heavier pen and is kept).
    for k in range(12):
        cv2.line(leaked, (760 + 24 * k, 120), (800 + 24 * k, 20), 1, 10)
    cv2.rectangle(leaked, (800, 180), (880, 260), 1, -1)  # a solid printed logo
    ink = np.zeros_like(leaked, dtype=bool)
    ink[:, :700] = hand
    ink |= leaked > 0
    # The plain pixel mean is dominated by the print; the component-robust estimate is not.
    assert _pixel_mean_width(ink) > 2.0 * clean
    assert estimate_stroke_width(ink) == pytest.approx(clean, rel=0.1)


def test_no_ink_is_nan_and_a_speck_is_at_least_one() -> None:
    assert math.isnan(estimate_stroke_width(np.zeros((5, 5), bool)))
    one = np.zeros((5, 5), bool)
    one[2, 2] = True
    assert estimate_stroke_width(one) >= 1.0
