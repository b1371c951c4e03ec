"""Texture families: run-length histograms and local binary patterns on the ink.

- Run lengths (Bulacu & Schomaker, TPAMI 2007, feature f5; after Arazi 1977): the
  distributions of horizontal and vertical run lengths of ink and of background between
  ink, which capture stroke width, letter spacing and roundness.
- Local binary patterns (Ojala, Pietikainen & Maenpaa, TPAMI 2002) on the smoothed ink at
  several radii, keeping the full 256 codes (writer identification wants orientation
  sensitivity, so no rotation-invariant mapping), counted only on pixels near the ink
  (the background would otherwise dominate), as in Bertolini et al. 2013 / Hannad et al.
  2016 for texture-based writer identification.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from cv.features import inkviews

__all__ = ["run_length_histograms", "run_length_dim", "lbp_histograms", "lbp_dim"]


def _check(ink: NDArray) -> NDArray[np.uint8]:
    arr = np.asarray(ink)
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise ValueError(f"ink must be a 2-D uint8 array, got {arr.dtype} {arr.shape}")
    return arr


def run_length_dim(*, max_ink: int = 24, max_gap: int = 48) -> int:
    """Length of the vector returned by :func:`run_length_histograms`."""
    return 2 * (max_ink + max_gap)


def _runs(grid: NDArray[np.uint8]) -> tuple[NDArray, NDArray]:
    """Lengths of the runs of non-zero pixels along rows, and whether each run is bounded
    (does not touch the row's first or last column)."""
    cols = grid.shape[1]
    _, c0, c1 = inkviews.row_runs(grid)
    # background runs touching the image border are margins, not gaps between strokes
    return c1 - c0, (c0 > 0) & (c1 < cols)


def run_length_histograms(
    ink: NDArray[np.uint8], *, max_ink: int = 24, max_gap: int = 48
) -> NDArray[np.float32]:
    """Horizontal and vertical run-length distributions of ink and of enclosed background.

    Parameters
    ----------
    ink : (rows, cols) uint8
        Non-zero = ink, at the normalised stroke width.
    max_ink, max_gap : int
        Longest ink / background run counted; longer runs go to the last bin.

    Returns
    -------
    (2 * (max_ink + max_gap),) float32
        Four histograms (ink-h, gap-h, ink-v, gap-v), each summing to 1 or all zero.
    """
    binary = (_check(ink) > 0).view(np.uint8)
    if max_ink < 1 or max_gap < 1:
        raise ValueError("max_ink and max_gap must be >= 1")
    out: list[NDArray] = []
    for grid in (binary, cv2.transpose(binary)):  # rows, then columns (contiguous)
        for value, top in ((True, max_ink), (False, max_gap)):
            lengths, bounded = _runs(grid if value else 1 - grid)
            if not value:
                lengths = lengths[bounded]
            hist = np.bincount(np.minimum(lengths, top) - 1, minlength=top).astype(np.float64)
            total = hist.sum()
            out.append(hist / total if total else hist)
    return np.concatenate(out).astype(np.float32)


def lbp_dim(*, radii: tuple[int, ...] = (1, 2, 4)) -> int:
    """Length of the vector returned by :func:`lbp_histograms`."""
    return 256 * len(radii)


_OFFSETS = [(np.cos(2 * np.pi * k / 8), -np.sin(2 * np.pi * k / 8)) for k in range(8)]


def lbp_histograms(
    ink: NDArray[np.uint8],
    *,
    radii: tuple[int, ...] = (1, 2, 4),
    smooth: NDArray[np.float32] | None = None,
) -> NDArray[np.float32]:
    """256-code LBP histograms of the smoothed ink at several radii, counted near the ink.

    Parameters
    ----------
    ink : (rows, cols) uint8
        Non-zero = ink.
    radii : tuple of int
        Neighbour circle radii in pixels (8 neighbours each, rounded to the pixel grid).
    smooth : optional
        :func:`cv.features.inkviews.smoothed` of this ink, when already computed.

    Returns
    -------
    (256 * len(radii),) float32
        One histogram per radius, each summing to 1 or all zero.
    """
    binary = (_check(ink) > 0).astype(np.uint8)
    if not radii or min(radii) < 1:
        raise ValueError(f"radii must be positive integers, got {radii}")
    # smoothing turns the binary stroke into a ramp so codes see stroke edges' shape
    if smooth is None:
        smooth = inkviews.smoothed(binary)
    rows, cols = binary.shape
    near = cv2.dilate(binary, np.ones((3, 3), np.uint8))
    found = cv2.findNonZero(near)
    xy = np.zeros((0, 2), np.int32) if found is None else found.reshape(-1, 2)
    # Neighbours off the image read 0 from a zero padding; when every counted pixel keeps
    # max(radii) px from the border (a prepared crop's margin) none is read and the padded
    # copy is skipped (~0.1 ms per call).
    reach = max(radii)
    x, y = xy[:, 0], xy[:, 1]  # per column: numpy reduces an (n, 2) array's axis 0 slowly
    inside = not len(xy) or bool(
        x.min() >= reach and y.min() >= reach and x.max() < cols - reach and y.max() < rows - reach
    )
    pad = 0 if inside else reach + 1
    if pad:
        smooth = cv2.copyMakeBorder(smooth, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0.0)
    # flat indices into the (padded) image: one 1-D gather per neighbour
    stride = cols + 2 * pad
    at = (y.astype(np.int64) + pad) * stride + (x + pad)
    flat = smooth.ravel()
    centre = flat[at]
    threshold = centre + 1e-3
    # Neighbour k of radius r sits ``shift`` flat pixels away: it is read through the view
    # flat[shift - low:] at base = at + low >= 0, compared once per distinct shift (radii 1
    # and 2 share their diagonal neighbours), and its bit set by multiply and or into a
    # reused buffer (numpy's uint8 shift is slow): ~0.35 ms less per call.
    shifts = {
        r: [int(round(r * dy)) * stride + int(round(r * dx)) for dx, dy in _OFFSETS] for r in radii
    }
    low = min(min(v) for v in shifts.values())
    base = at + low
    above_at: dict[int, NDArray[np.uint8]] = {}
    bit = np.empty(len(at), np.uint8)
    out = []
    for r in radii:
        code = np.zeros(len(at), np.uint8)
        for k, shift in enumerate(shifts[r]):
            if shift not in above_at:
                above_at[shift] = (flat[shift - low :][base] >= threshold).view(np.uint8)
            np.multiply(above_at[shift], np.uint8(1 << k), out=bit)
            code |= bit
        hist = np.bincount(code, minlength=256).astype(np.float64)
        total = hist.sum()
        out.append(hist / total if total else hist)
    return np.concatenate(out).astype(np.float32)
