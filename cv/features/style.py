"""Global writing-style measurements, soft-binned into a small histogram family.

Writer identification's oldest features are global ones: writing size, pen width and ink
darkness (Srihari et al., "Individuality of handwriting", J. Forensic Sci. 47(4), 2002,
"macro features": grey-level and stroke-width statistics, height and slant). Stroke-width
scale normalisation removes size and pen width from every other family, so they are
measured here on the original scan (``quality.x_height`` and ``quality.stroke_width`` from
preprocessing) and put back as a family of their own. Each scalar is encoded by Gaussian
soft-binning over a fixed range, so it behaves like the other histogram families under
square-root and L2 normalisation.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from cv.features import inkviews

__all__ = ["letter_gap", "letter_height", "line_angle", "slant", "style_features", "style_dim"]

_BINS = 8
# (low, high) of each scalar; values outside are clipped to the end bins
_RANGES = (
    (np.log(4.0), np.log(80.0)),  # x-height, px on the scan (log)
    (np.log(1.0), np.log(16.0)),  # stroke width, px on the scan (log)
    (np.log(1.5), np.log(15.0)),  # x-height / stroke width (log)
    (0.0, 1.0),  # ink darkness: 1 - mean grey of ink pixels / 255
    (0.0, 0.35),  # spread of ink grey (std / 255): pen pressure
    (-0.1, 0.3),  # slant: lean dx/dy of the near-vertical strokes
    (0.0, 0.4),  # gap between letters, in letter heights
    (0.3, 1.0),  # darkest ink: 1 - 5th percentile grey of ink pixels / 255
    (-4.0, 4.0),  # line angle, degrees uphill
)


def style_dim() -> int:
    """Length of the vector returned by :func:`style_features`."""
    return _BINS * len(_RANGES)


def _soft_bins(value: float, low: float, high: float) -> NDArray[np.float64]:
    centres = np.linspace(low, high, _BINS)
    width = (high - low) / (_BINS - 1)
    v = float(np.clip(value, low, high))
    w = np.exp(-0.5 * ((centres - v) / (0.75 * width)) ** 2)
    return w / w.sum()


def _component_stats(ink: NDArray[np.uint8]) -> NDArray[np.int32]:
    """Statistics rows (x, y, w, h, area) of the 8-connected ink components, background out."""
    return inkviews.components((np.asarray(ink) > 0).view(np.uint8))[2][1:]


def _median_height(stats: NDArray[np.int32]) -> float:
    heights = stats[:, cv2.CC_STAT_HEIGHT]
    keep = (stats[:, cv2.CC_STAT_AREA] >= 20) & (heights >= 6)
    return float(np.median(heights[keep])) if keep.any() else float("nan")


def letter_height(ink: NDArray[np.uint8]) -> float:
    """Median height (px) of the letter-sized connected components of an ink crop.

    The row profile of a whole slip mixes text written in different boxes and lines; the
    median component height follows the writer's letter size (measured on generated slips:
    correlation with the writer's true size 0.46 against 0.17 for the row-profile x-height).
    """
    return _median_height(_component_stats(ink))


def slant(ink: NDArray[np.uint8]) -> float:
    """Mean lean (dx per unit height, > 0 leans right) of the near-vertical stroke edges.

    Srihari et al. 2002 count slant among the macro features; estimated here from the
    gradient of the ink at half resolution (a lean does not depend on scale; a quarter of
    the pixels): where the gradient is mostly horizontal the edge is near vertical and
    gy/gx is its lean, averaged with the gradient magnitude as weight (measured on
    generated fit-split writers: within/between-writer reliability (ICC) 0.9, against 0.27
    for the shear maximising the column profile's energy).
    """
    u8 = (np.asarray(ink) > 0).astype(np.float32)
    rows, cols = u8.shape
    # even sides first: OpenCV's area resize is fast only at exact integer factors
    if rows >= 2 and cols >= 2:
        u8 = u8[: rows - rows % 2, : cols - cols % 2]
    f = cv2.resize(u8, (max(1, cols // 2), max(1, rows // 2)), interpolation=cv2.INTER_AREA)
    gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3)
    mag = cv2.magnitude(gx, gy)
    near_vertical = (np.abs(gx) > 1.5 * np.abs(gy)) & (mag > 0.1)
    if np.count_nonzero(near_vertical) < 25:
        return float("nan")
    lean = np.clip(gy[near_vertical] / gx[near_vertical], -1.0, 1.0)
    w = mag[near_vertical]
    return float((lean * w).sum() / w.sum())


def letter_gap(ink: NDArray[np.uint8], height: float) -> float:
    """Median gap between neighbouring letters on a line, in units of ``height``.

    For each ink component the nearest component to its right on the same line (vertical
    centres within 0.8 heights) gives one gap; gaps of half a letter height or more are
    word or box gaps and are left out (letter spacing ICC 0.75 on generated fit writers;
    word gaps measured this way were not writer-specific, ICC 0.25).
    """
    return _line_measures(_component_stats(ink), height)[0]


def line_angle(ink: NDArray[np.uint8], height: float) -> float:
    """Median angle (degrees, > 0 runs uphill) from a letter's bottom to its right neighbour's.

    On a deskewed slip the writing's own rise is a habit of the writer (ICC 0.46 on
    generated fit writers, correlation 0.57 with the generator's true line rotation);
    descenders make single pairs noisy, the median over all pairs is robust to them.
    """
    return _line_measures(_component_stats(ink), height)[1]


def _line_measures(stats: NDArray[np.int32], height: float) -> tuple[float, float]:
    """(letter gap in heights, line angle in degrees) from neighbouring components."""
    nan = float("nan")
    if not (height > 0):
        return nan, nan
    st = stats[stats[:, cv2.CC_STAT_AREA] >= 8].astype(np.float64)
    if len(st) < 2:
        return nan, nan
    st = st[np.argsort(st[:, 0], kind="stable")]
    x0, w = st[:, 0], st[:, 2]
    cy = st[:, 1] + st[:, 3] / 2
    cx = x0 + w / 2
    bottom = st[:, 1] + st[:, 3]
    x1 = x0 + w
    # candidates of component i: the ones starting before x1[i] + 3 heights (sorted by x0),
    # as (i, j) pairs grouped by i and ordered by j (one array pass instead of a loop)
    ends = np.searchsorted(x0, x1 + 3 * height, side="right")
    counts = np.maximum(ends - np.arange(len(st)) - 1, 0)
    first = np.cumsum(counts) - counts
    i = np.repeat(np.arange(len(st)), counts)
    j = i + 1 + np.arange(int(counts.sum())) - np.repeat(first, counts)
    keep = (np.abs(cy[j] - cy[i]) < 0.8 * height) & (x0[j] >= x0[i] + 0.8 * w[i])
    i, j = i[keep], j[keep]
    # the nearest component to the right of each i that has one
    starts = np.flatnonzero(np.r_[True, i[1:] != i[:-1]]) if i.size else i
    nearest = np.minimum.reduceat(x0[j] - x1[i], starts) if i.size else np.zeros(0)
    gaps = np.maximum(nearest, 0.0) / height
    # the first two of those whose centre is half a letter or more to the right
    ahead = cx[j] - cx[i] > 0.5 * height
    i, j = i[ahead], j[ahead]
    rank = np.arange(i.size) - np.searchsorted(i, i, side="left")
    i, j = i[rank < 2], j[rank < 2]
    angles = -np.degrees(np.arctan((bottom[j] - bottom[i]) / (cx[j] - cx[i])))
    small = gaps[gaps < 0.5]
    gap = float(np.median(small)) if small.size else nan
    angle = float(np.median(angles)) if len(angles) >= 3 else nan
    return gap, angle


def style_features(
    ink: NDArray[np.uint8],
    grey: NDArray[np.uint8],
    *,
    stroke_width: float,
    x_height: float,
    scale: float | None = None,
    components: tuple[int, NDArray[np.int32], NDArray[np.int32]] | None = None,
) -> NDArray[np.float32]:
    """Soft-binned size, pen width, their ratio, ink darkness and darkness spread.

    Parameters
    ----------
    ink : (rows, cols) uint8
        Non-zero = handwriting ink (the normalised crop).
    grey : (rows, cols) uint8
        The same crop in greyscale, dark ink on white.
    stroke_width, x_height : float
        Median stroke width and x-height of the handwriting in pixels of the original
        scan (``Prepared.quality``).
    scale : float, optional
        Crop pixels per scan pixel (``Prepared.scale``); when given, the size measurement
        is :func:`letter_height` of the crop brought back to scan pixels instead of
        ``x_height``.
    components : optional
        :func:`cv.features.inkviews.components` of ``ink``, when already computed.

    Returns
    -------
    (style_dim(),) float32
        One soft histogram per measurement, each summing to 1; all zero without ink.
    """
    ink = np.asarray(ink)
    grey = np.asarray(grey)
    if ink.ndim != 2 or ink.shape != grey.shape:
        raise ValueError(f"ink and grey must be 2-D of equal shape, got {ink.shape}, {grey.shape}")
    mask = ink > 0
    stats = _component_stats(ink) if components is None else components[2][1:]
    height_px = _median_height(stats)
    if scale is not None and scale > 0:
        x_height = height_px / scale
    if not mask.any() or not (stroke_width > 0 and x_height > 0):
        return np.zeros(style_dim(), np.float32)
    levels = grey[mask].astype(np.float64) / 255.0
    gap, angle = _line_measures(stats, height_px)
    values = (
        np.log(x_height),
        np.log(stroke_width),
        np.log(x_height / stroke_width),
        1.0 - float(levels.mean()),
        float(levels.std()),
        slant(ink),
        gap,
        1.0 - float(np.percentile(levels, 5)),
        angle,
    )
    # a measurement that cannot be made (too few strokes or letters) votes for no bin
    parts = [
        _soft_bins(v, lo, hi) if np.isfinite(v) else np.zeros(_BINS)
        for v, (lo, hi) in zip(values, _RANGES, strict=True)
    ]
    return np.concatenate(parts).astype(np.float32)
