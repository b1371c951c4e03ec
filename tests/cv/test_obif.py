"""Tests for cv.features.obif: known symmetry types on synthetic grey images, shape, determinism."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cv.features import obif
from tests.cv.shapes import scribble_ink

# code offsets (see obif.obif_codes)
SLOPE, DARK_BLOB, LIGHT_BLOB, DARK_LINE, LIGHT_LINE, SADDLE = 1, 9, 10, 11, 15, 19


def _dark_hline(width: int = 3) -> np.ndarray:
    img = np.full((41, 61), 255, np.uint8)
    img[20 - width // 2 : 20 - width // 2 + width, :] = 40
    return img


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_dark_horizontal_line_is_a_horizontal_dark_line_at_its_centre(sigma):
    codes = obif.obif_codes(_dark_hline(), sigma)
    assert codes.shape == (41, 61)
    assert codes[20, 30] == DARK_LINE + 0  # running at 0 degrees
    # its rims are slopes towards the brighter paper: up (270 deg, y down) and down (90 deg)
    assert codes[20 - 2 * int(sigma) - 1, 30] == SLOPE + 6
    assert codes[20 + 2 * int(sigma) + 1, 30] == SLOPE + 2
    # far from the line the paper is flat
    assert codes[2, 30] == 0


def test_line_orientation_and_polarity():
    vertical = np.ascontiguousarray(_dark_hline().T)
    assert obif.obif_codes(vertical, 1.0)[30, 20] == DARK_LINE + 2  # 90 degrees
    light = 255 - _dark_hline()
    assert obif.obif_codes(light, 1.0)[20, 30] == LIGHT_LINE + 0
    diagonal = np.full((61, 61), 255, np.uint8)
    cv2.line(diagonal, (0, 0), (60, 60), 40, 3)  # runs at 45 degrees (x right, y down)
    assert obif.obif_codes(diagonal, 1.0)[30, 30] == DARK_LINE + 1


def test_blobs_and_saddle():
    dot = np.full((41, 41), 255, np.uint8)
    cv2.circle(dot, (20, 20), 2, 0, -1)
    assert obif.obif_codes(dot, 2.0)[20, 20] == DARK_BLOB
    assert obif.obif_codes(255 - dot, 2.0)[20, 20] == LIGHT_BLOB
    # x^2 - y^2 around the centre: brightening along x, darkening along y
    y, x = np.mgrid[-20:21, -20:21].astype(np.float64)
    saddle = np.clip(128 + 2.0 * (x * x - y * y), 0, 255).astype(np.uint8)
    assert obif.obif_codes(saddle, 2.0)[20, 20] == SADDLE + 0


def test_flat_below_eps():
    ramp = np.tile(np.linspace(120, 130, 60).astype(np.uint8), (40, 1))
    assert (obif.obif_codes(ramp, 1.0, eps=0.1)[5:-5, 5:-5] == 0).all()
    # with no flat threshold the gentle ramp is a slope brightening to the right (0 degrees)
    assert obif.obif_codes(ramp, 2.0, eps=0.0)[20, 30] == SLOPE + 0


def _scribble_grey(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    ink = scribble_ink(seed, width=5)
    grey = cv2.GaussianBlur(255 - ink, (0, 0), 0.8)
    return grey, ink


def test_columns_shape_distribution_and_determinism():
    grey, ink = _scribble_grey()
    pairs = ((1.0, 2.0), (2.0, 4.0))
    h = obif.obif_columns(grey, ink, scale_pairs=pairs)
    assert h.dtype == np.float32
    assert h.shape == (obif.obif_dim(pairs),) == (2 * 529,)
    np.testing.assert_allclose([h[:529].sum(), h[529:].sum()], [1.0, 1.0], atol=1e-5)
    np.testing.assert_array_equal(h, obif.obif_columns(grey.copy(), ink.copy(), scale_pairs=pairs))
    assert h.shape == (obif.obif_dim(),)
    # a stroke's centre line is dark line at both scales: that column is among the common ones
    col = h[:529].reshape(23, 23)
    assert col[DARK_LINE : DARK_LINE + 4, DARK_LINE : DARK_LINE + 4].sum() > 0.05


def test_columns_zero_without_ink_and_reject_bad_input():
    grey, ink = _scribble_grey()
    assert not obif.obif_columns(grey, np.zeros_like(ink)).any()
    with pytest.raises(ValueError, match="shape"):
        obif.obif_columns(grey, ink[:10])
    with pytest.raises(ValueError, match="2-D"):
        obif.obif_codes(np.zeros((4, 4, 3), np.uint8), 1.0)
