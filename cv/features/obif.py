"""Oriented Basic Image Feature (oBIF) columns of the handwriting's grey levels.

Basic Image Features (Crosier & Griffin, "Using basic image features for texture
classification", IJCV 88(3), 2010) classify the local symmetry of an image at one scale into
one of seven types from its Gaussian derivative responses up to second order: flat, slope,
dark blob, light blob, dark line, light line, saddle. Newell & Griffin ("Writer
identification using oriented Basic Image Features and the Delta encoding", Pattern
Recognition 47(6), 2014) add orientation (slopes in 8 directions, lines and saddles in 4:
23 oBIFs) and pair each pixel's oBIF at two scales (sigma, 2 sigma) into an "oBIF column",
529 bins, histogrammed over the writing. Unlike the binary-ink families this sees the grey
levels: stroke rims, pen weight and curvature.

For speed (~3 ms a slip instead of ~30 ms with derivative kernels on the whole crop) each
scale is computed on the coarsest level of an area-averaged pyramid where it still spans
about one pixel: one float32 ``cv2.GaussianBlur`` of that level, then central finite
differences only at the pixels counted. Those are the pixels of a dilation of the ink, so
the whitened background and the crop's margin do not dilute the histogram.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = ["OBIF_CLASSES", "obif_codes", "obif_columns", "obif_dim"]

# 1 flat + 8 slope + dark blob + light blob + 4 dark line + 4 light line + 4 saddle
OBIF_CLASSES = 23
# (sigma, 2 sigma) pairs, in pixels of the normalised crop (stroke width 5)
DEFAULT_SCALE_PAIRS: tuple[tuple[float, float], ...] = ((1.0, 2.0), (2.0, 4.0))
# Flat wins where no other symmetry's strength exceeds eps times the blurred intensity
# (Crosier & Griffin's epsilon; Newell & Griffin use ~0.1 on [0, 1] grey levels).
DEFAULT_EPS = 0.1
# Pixels within this radius of ink are histogrammed (stroke rims and the pen's shading).
DEFAULT_DILATE = 2
# Sampling stride (px) of the counted pixels
_STRIDE = 2

# code offsets of the seven types
_FLAT, _SLOPE, _DARK_BLOB, _LIGHT_BLOB, _DARK_LINE, _LIGHT_LINE, _SADDLE = 0, 1, 9, 10, 11, 15, 19


def obif_dim(scale_pairs: Sequence[tuple[float, float]] = DEFAULT_SCALE_PAIRS) -> int:
    """Length of the vector returned by :func:`obif_columns`."""
    return OBIF_CLASSES * OBIF_CLASSES * len(scale_pairs)


def _level(sigma: float) -> int:
    """Pyramid level (0 = the crop, 1 = half size, ...) a scale is computed at: the coarsest
    on which it still spans ~0.9 pixels, so each scale costs about as much as sigma = 1 on
    the crop (finite differences of the blurred level stand in for derivative kernels)."""
    level = 0
    while sigma / 2 ** (level + 1) >= 0.9:
        level += 1
    return level


def _pyramid(grey: NDArray[np.uint8], levels: int) -> list[NDArray[np.float32]]:
    """[0, 1] float32 grey at full, half, quarter ... size (area-averaged halvings)."""
    out = [grey.astype(np.float32) * np.float32(1.0 / 255.0)]
    for _ in range(levels):
        f = out[-1]
        # an even size first, so pixel (y, x) of a level is (y >> 1, x >> 1) of the next
        pad_r, pad_c = f.shape[0] % 2, f.shape[1] % 2
        if pad_r or pad_c:
            f = cv2.copyMakeBorder(f, 0, pad_r, 0, pad_c, cv2.BORDER_REPLICATE)
        size = (f.shape[1] // 2, f.shape[0] // 2)
        out.append(cv2.resize(f, size, interpolation=cv2.INTER_AREA))
    return out


def _classify(
    image: NDArray[np.float32],
    sigma: float,
    level: int,
    y: NDArray[np.intp],
    x: NDArray[np.intp],
    eps: float,
) -> NDArray[np.uint8]:
    """oBIF codes (see :func:`obif_codes`) at the pixels (y, x) of ``image``, the pyramid
    level ``level`` of the grey, for the scale ``sigma`` in pixels of the crop."""
    rows, cols = image.shape
    t = sigma / 2**level  # the scale in pixels of this level
    # area averaging 2^level pixels already blurred by a box of variance (1 - 4^-level) / 12
    blur = math.sqrt(max(t * t - (1.0 - 4.0**-level) / 12.0, 0.25))
    p = cv2.GaussianBlur(image, (0, 0), blur, borderType=cv2.BORDER_REPLICATE).ravel()
    # neighbours clipped to the image (the replicated border) instead of a padded copy
    row, up, down = y * cols, np.maximum(y - 1, 0) * cols, np.minimum(y + 1, rows - 1) * cols
    left, right = np.maximum(x - 1, 0), np.minimum(x + 1, cols - 1)
    c00 = p[row + x]
    east, west, north, south = p[row + right], p[row + left], p[up + x], p[down + x]
    # scale-normalised responses s_ij = t^(i+j) d^(i+j)L / dx^i dy^j (Crosier & Griffin 2010)
    t1, t2 = np.float32(0.5 * t), np.float32(t * t)
    c10 = (east - west) * t1
    c01 = (south - north) * t1
    c20 = (east + west - 2.0 * c00) * t2
    c02 = (south + north - 2.0 * c00) * t2
    c11 = (p[down + right] - p[down + left] - p[up + right] + p[up + left]) * np.float32(
        0.25 * t * t
    )
    lam = c20 + c02
    d = c20 - c02
    gam = np.sqrt(d * d + 4.0 * c11 * c11)
    r2 = np.float32(1.0 / math.sqrt(2.0))
    strength = np.stack(
        [
            np.float32(eps) * c00,  # flat
            2.0 * np.sqrt(c10 * c10 + c01 * c01),  # slope
            lam,  # dark blob (an intensity minimum)
            -lam,  # light blob
            (gam + lam) * r2,  # dark line
            (gam - lam) * r2,  # light line
            gam,  # saddle
        ]
    )
    kind = np.argmax(strength, axis=0).astype(np.uint8)
    code = np.zeros(kind.shape, np.uint8)
    # orientations, each to the nearest multiple of 45 degrees, only where a type has one
    q = np.float32(4.0 / math.pi)
    sl = np.flatnonzero(kind == 1)
    code[sl] = _SLOPE + np.rint(np.arctan2(c01[sl], c10[sl]) * q).astype(np.int32) % 8
    code[kind == 2] = _DARK_BLOB
    code[kind == 3] = _LIGHT_BLOB
    ax = np.flatnonzero(kind >= 4)
    # direction of the Hessian's larger (most upward) curvature, mod 180 degrees
    axis = np.rint(np.arctan2(2.0 * c11[ax], d[ax]) * (0.5 * q)).astype(np.int32) % 4
    k = kind[ax]
    # a dark line curves up across itself, so it runs 90 degrees from that axis
    code[ax] = np.where(
        k == 4, _DARK_LINE + (axis + 2) % 4, np.where(k == 5, _LIGHT_LINE, _SADDLE) + axis
    )
    return code


def obif_codes(
    grey: NDArray[np.uint8], sigma: float, *, eps: float = DEFAULT_EPS
) -> NDArray[np.uint8]:
    """The oBIF code (0..22) of each pixel of ``grey`` at scale ``sigma``.

    Codes: 0 flat; 1-8 slope, gradient direction k * 45 degrees (x right, y down, towards
    brighter); 9 dark blob; 10 light blob; 11-14 dark line and 15-18 light line, the line
    running at k * 45 degrees (0 = horizontal, 2 = vertical); 19-22 saddle, its
    upward-curving (brightening) axis at k * 45 degrees. Scales of 1.8 px and more are
    computed on a halved (area-averaged) copy, so the codes hold per pixel of that level.

    Parameters
    ----------
    grey : (rows, cols) uint8
        Dark ink on light paper.
    sigma : float
        Scale (px) of the Gaussian derivatives.
    eps : float
        Flat threshold on [0, 1] grey levels.

    Returns
    -------
    (rows, cols) uint8
    """
    grey = np.asarray(grey)
    if grey.ndim != 2:
        raise ValueError(f"grey must be 2-D, got shape {grey.shape}")
    level = _level(sigma)
    image = _pyramid(grey, level)[level]
    rows, cols = grey.shape
    ys, xs = np.mgrid[0:rows, 0:cols]
    codes = _classify(image, sigma, level, (ys >> level).ravel(), (xs >> level).ravel(), eps)
    return codes.reshape(rows, cols)


def obif_columns(
    grey: NDArray[np.uint8],
    ink: NDArray[np.uint8],
    *,
    scale_pairs: Sequence[tuple[float, float]] = DEFAULT_SCALE_PAIRS,
    eps: float = DEFAULT_EPS,
    dilate: int = DEFAULT_DILATE,
) -> NDArray[np.float32]:
    """Histograms of oBIF columns over the pixels near the handwriting (Newell & Griffin 2014).

    Parameters
    ----------
    grey : (rows, cols) uint8
        The handwriting crop in greyscale, dark ink on white (``Prepared.grey``).
    ink : (rows, cols) uint8
        Non-zero = handwriting ink, same shape (``Prepared.ink``).
    scale_pairs : sequence of (float, float)
        (fine, coarse) scales of each column; scales shared by pairs are filtered once.
    eps : float
        Flat threshold (:func:`obif_codes`).
    dilate : int
        Radius (px) of the ink dilation whose pixels are counted.

    Returns
    -------
    (obif_dim(scale_pairs),) float32
        One 529-bin histogram per scale pair, each summing to 1; all zero without ink.
    """
    grey = np.asarray(grey)
    ink = np.asarray(ink)
    if grey.ndim != 2 or grey.shape != ink.shape:
        raise ValueError(f"grey and ink must be 2-D of equal shape, got {grey.shape}, {ink.shape}")
    n_bins = OBIF_CLASSES * OBIF_CLASSES
    out = np.zeros(n_bins * len(scale_pairs), np.float32)
    mask = (ink > 0).view(np.uint8) if ink.dtype == np.bool_ else (ink > 0).astype(np.uint8)
    if dilate > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1))
        mask = cv2.dilate(mask, k)
    # every second pixel of every second row: a quarter of the work, and the histogram of
    # the ~10,000 pixels left is as stable (its bins move by their sampling noise only)
    ys, xs = np.nonzero(np.ascontiguousarray(mask[::_STRIDE, ::_STRIDE]))
    if ys.size == 0:
        return out
    ys *= _STRIDE
    xs *= _STRIDE
    scales = sorted({s for pair in scale_pairs for s in pair})
    pyramid = _pyramid(grey, max(_level(s) for s in scales))
    codes = {}
    for s in scales:
        level = _level(s)
        image = pyramid[level]
        yl, xl = ys >> level, xs >> level
        if level < 2:  # one sample per pixel of the level (stride 2)
            codes[s] = _classify(image, s, level, yl, xl, eps).astype(np.int32)
            continue
        # several samples share a pixel: classify each pixel once, then look it up
        under = np.zeros(image.shape, bool)
        under[yl, xl] = True
        uy, ux = np.nonzero(under)
        lookup = np.zeros(image.shape, np.uint8)
        lookup[uy, ux] = _classify(image, s, level, uy, ux, eps)
        codes[s] = lookup[yl, xl].astype(np.int32)
    for i, (fine, coarse) in enumerate(scale_pairs):
        col = codes[fine] * OBIF_CLASSES + codes[coarse]
        h = np.bincount(col, minlength=n_bins).astype(np.float32)
        out[i * n_bins : (i + 1) * n_bins] = h / h.sum()
    return out
