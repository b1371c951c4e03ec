"""COLD, the cloud of line distribution: log-polar histograms of polygon chords.

Implements He & Schomaker, "Beyond OCR: multi-faceted understanding of handwritten document
characteristics", Pattern Recognition 63, 2017 (and "Writer identification using
curvature-free features", Pattern Recognition 63, 2017): each ink contour is approximated
by a polygon through its dominant points; the straight lines joining dominant points ``k``
apart along the polygon (k = 1 are its edges, larger k chords spanning several edges) form a
cloud of (length, orientation) points, histogrammed on a log-polar grid, one histogram per k.
Long straight strokes give long lines, curved strokes many short ones, so the cloud captures
curvature and stroke direction without measuring curvature itself.

Dominant points here: ``cv2.approxPolyDP`` (Ramer-Douglas-Peucker) with tolerance
``epsilon`` pixels, at the normalised stroke width.  The paper's Hellinger normalisation is
the square root :mod:`cv.embed` applies to every histogram family.

Defaults chosen on validation writers (bench/accuracy.py's splits, COLD alone, seed 0,
generated / UNIPEN mAP): k = 1-3 0.285 / 0.252, k = 1-5 0.310 / 0.288, k = 1-7 0.314 / 0.294;
averaged over scales 0.9, 1, 1.1 (cv.embed scale pooling) k = 1-5 0.367 / 0.329, with
epsilon 1.0 instead of 1.5 0.375 / 0.340 and the better fusion.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

from cv.features import inkviews

__all__ = ["cold_dim", "cold_histograms", "dominant_polygons"]


def cold_dim(
    *, ks: Sequence[int] = (1, 2, 3, 4, 5), angle_bins: int = 12, radius_bins: int = 7
) -> int:
    """Length of the vector :func:`cold_histograms` returns with these options."""
    return len(ks) * angle_bins * radius_bins


def dominant_polygons(
    contours: Sequence[NDArray[np.int32]], *, epsilon: float, min_length: int
) -> list[NDArray[np.float64]]:
    """Each contour of at least ``min_length`` pixels as the closed polygon of its dominant
    points ((n, 2) x, y; Ramer-Douglas-Peucker at tolerance ``epsilon`` px)."""
    out = []
    for c in contours:
        if len(c) >= min_length:
            poly = cv2.approxPolyDP(c, epsilon, True)
            out.append(poly.reshape(-1, 2).astype(np.float64))
    return out


def cold_histograms(
    ink: NDArray[np.uint8],
    *,
    ks: Sequence[int] = (1, 2, 3, 4, 5),
    angle_bins: int = 12,
    radius_bins: int = 7,
    r_min: float = 2.0,
    r_max: float = 128.0,
    epsilon: float = 1.0,
    min_length: int = 8,
    contours: Sequence[NDArray[np.int32]] | None = None,
) -> NDArray[np.float32]:
    """One log-polar (angle x log length) histogram of the dominant-point lines per ``k``.

    Parameters
    ----------
    ink : (rows, cols) uint8
        Binary handwriting image, non-zero = ink, at the normalised stroke width.
    ks : sequence of int
        Steps between the joined dominant points (1 = the polygon's edges).
    angle_bins : int
        Bins of the line orientation over [0, 360) degrees (contours are oriented, so a
        line keeps the direction the contour walks it).
    radius_bins : int
        Bins of log length between ``r_min`` and ``r_max`` pixels; shorter and longer lines
        fall in the first and last bin.
    epsilon : float
        Polygon approximation tolerance in pixels.
    min_length : int
        Contours of fewer pixels are dropped.
    contours : optional
        :func:`cv.features.inkviews.contours` of this ink, when already computed.

    Returns
    -------
    (cold_dim(...),) float32
        Concatenated histograms, each summing to 1 (zeros where no polygon has k + 1 points).
    """
    arr = np.asarray(ink)
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise ValueError(f"ink must be a 2-D uint8 array, got {arr.dtype} {arr.shape}")
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    if angle_bins < 2 or radius_bins < 2 or not 0 < r_min < r_max:
        raise ValueError("need angle_bins, radius_bins >= 2 and 0 < r_min < r_max")
    cells = angle_bins * radius_bins
    out = np.zeros(len(ks) * cells, np.float32)
    if contours is None:
        contours = inkviews.contours(inkviews.binary(arr))
    polys = dominant_polygons(contours, epsilon=epsilon, min_length=min_length)
    if not polys:
        return out
    pts = np.concatenate(polys)
    lens = np.array([len(p) for p in polys])
    starts = np.repeat(np.cumsum(lens) - lens, lens)
    period = np.repeat(lens, lens)
    local = np.arange(len(pts)) - starts
    log_lo, log_span = np.log(r_min), np.log(r_max) - np.log(r_min)
    for i, k in enumerate(ks):
        keep = period > k  # a polygon of n points has n distinct chords for k < n
        src = np.flatnonzero(keep)
        if not len(src):
            continue
        dst = starts[src] + (local[src] + k) % period[src]
        d = pts[dst] - pts[src]
        # image rows grow downwards: negate dy so angles are counter-clockwise as on paper
        theta = np.arctan2(-d[:, 1], d[:, 0]) % (2 * np.pi)
        rho = np.hypot(d[:, 0], d[:, 1])
        a = np.floor(theta / (2 * np.pi) * angle_bins).astype(np.int64) % angle_bins
        r = np.floor((np.log(np.maximum(rho, 1e-9)) - log_lo) / log_span * radius_bins)
        r = np.clip(r, 0, radius_bins - 1).astype(np.int64)
        hist = np.bincount(a * radius_bins + r, minlength=cells)
        out[i * cells : (i + 1) * cells] = hist / hist.sum()
    return out
