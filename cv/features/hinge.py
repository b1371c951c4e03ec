"""Contour-direction, contour-hinge and direction co-occurrence distributions.

Implements the edge-based directional features of Bulacu & Schomaker, "Text-independent
writer identification and verification using textural and allographic features", TPAMI
29(4), 2007:

- f1, contour direction: the distribution of the direction of a contour fragment of
  ``leg`` pixels, over [0, 180) degrees;
- f2, contour hinge: the joint distribution of the directions of the two legs of a hinge
  centred on each contour pixel, over [0, 360) x [0, 360) (keeping phi2 >= phi1);
- f3h / f3v, direction co-occurrence: the joint distribution of the contour directions at
  the two ends of each horizontal (vertical) ink run.

Contours come from ``cv2.findContours`` (Suzuki & Abe 1985) on the binary ink image; the
contour pixels are walked with wrap-around, so closed loops contribute every pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np
from numpy.typing import NDArray

from cv.features import inkviews

__all__ = ["contour_features", "contour_chains", "hinge_dim"]


def _check_ink(ink: NDArray, *, name: str = "ink") -> NDArray[np.uint8]:
    arr = np.asarray(ink)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (rows, cols) array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {arr.dtype}")
    return np.ascontiguousarray(arr)


def contour_chains(
    ink: NDArray[np.uint8],
    *,
    min_length: int,
    contours: Sequence[NDArray[np.int32]] | None = None,
) -> list[NDArray[np.int32]]:
    """Closed contour chains of the ink, as (m, 2) arrays of (x, y) pixel coordinates.

    Parameters
    ----------
    ink : (rows, cols) uint8
        Non-zero = ink.
    min_length : int
        Chains shorter than this are dropped (specks cannot carry a hinge).
    contours : optional
        :func:`cv.features.inkviews.contours` of this ink, when already computed.
    """
    ink = _check_ink(ink)
    if contours is None:
        contours = inkviews.contours(inkviews.binary(ink))
    return [np.asarray(c, np.int32).reshape(-1, 2) for c in contours if len(c) >= min_length]


def _leg_vectors(
    chains: list[NDArray[np.int32]], legs: tuple[int, ...]
) -> tuple[NDArray[np.int32], list[tuple[NDArray[np.int32], NDArray[np.int32]]]]:
    """The contour pixels, (m, 2) int32 (x, y), and per leg length the forward and backward
    leg vectors (dx, dy) at each pixel, walking each closed chain with wrap-around (every
    chain is longer than every leg)."""
    pts = np.concatenate(chains)
    lens = np.array([len(c) for c in chains])
    starts = np.repeat(np.cumsum(lens) - lens, lens)
    period = np.repeat(lens, lens)
    local = np.arange(len(pts)) - starts
    # each (x, y) pair read as one int64: a 1-D gather instead of a gather of rows
    pairs = pts.view(np.int64).ravel()
    legs_out = []
    for leg in legs:
        # positions along the chain, wrapped once (cheaper than an integer modulo)
        ahead, behind = local + leg, local - leg
        np.subtract(ahead, period, out=ahead, where=ahead >= period)
        np.add(behind, period, out=behind, where=behind < 0)
        ahead_xy = pairs[starts + ahead].view(np.int32).reshape(-1, 2)
        behind_xy = pairs[starts + behind].view(np.int32).reshape(-1, 2)
        legs_out.append((ahead_xy - pts, behind_xy - pts))
    return pts, legs_out


@lru_cache(maxsize=16)
def _angle_bins(
    reach: int, direction_bins: int, hinge_bins: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """f1 direction bin and hinge-leg bin of every integer vector (dx, dy) with |dx|, |dy|
    <= ``reach``, at index (dy + reach) * (2 * reach + 1) + dx + reach.

    Legs are integer vectors of at most ``leg`` pixels per axis (chains are 8-connected),
    so a table of (2 * leg + 1)^2 angles replaces an arctan2 per contour pixel and leg
    (~2 ms per slip); the table runs the same float64 arithmetic, so the bins are equal.
    """
    side = 2 * reach + 1
    dy, dx = np.divmod(np.arange(side * side), side)
    dx_f, dy_f = (dx - reach).astype(np.float64), (dy - reach).astype(np.float64)
    # image rows grow downwards: negate dy so angles are counter-clockwise as on paper
    phi = np.arctan2(-dy_f, dx_f) % (2 * np.pi)
    # f1: the fragment direction is unoriented, hence modulo pi
    direction = np.floor((phi % np.pi) / np.pi * direction_bins).astype(np.int64)
    hinge = np.floor(phi / (2 * np.pi) * hinge_bins).astype(np.int64) % hinge_bins
    direction %= direction_bins
    direction.setflags(write=False)
    hinge.setflags(write=False)
    return direction, hinge


def hinge_dim(
    *, direction_bins: int = 12, hinge_bins: int = 24, legs: tuple[int, ...] = (5,)
) -> int:
    """Length of the vector returned by :func:`contour_features` with these options."""
    tri = hinge_bins * (hinge_bins + 1) // 2
    return len(legs) * (direction_bins + tri) + 2 * direction_bins * direction_bins


@lru_cache(maxsize=8)
def _triangle_index(bins: int) -> tuple[NDArray[np.int64], int]:
    """(bins, bins) index of each (lo, hi) cell of the upper triangle, and its size."""
    rows, cols = np.triu_indices(bins)
    index = np.full((bins, bins), -1, np.int64)
    index[rows, cols] = np.arange(len(rows))
    index.setflags(write=False)
    return index, len(rows)


def contour_features(
    ink: NDArray[np.uint8],
    *,
    direction_bins: int = 12,
    hinge_bins: int = 24,
    legs: tuple[int, ...] = (5,),
    contours: Sequence[NDArray[np.int32]] | None = None,
) -> NDArray[np.float32]:
    """f1 + f2 per leg length, then f3h + f3v, each block a probability distribution.

    Parameters
    ----------
    ink : (rows, cols) uint8
        Binary handwriting image, non-zero = ink, at the normalised stroke width.
    direction_bins : int
        Bins of f1 over [0, 180) degrees; f3 uses the same bins on both axes.
    hinge_bins : int
        Bins of each hinge leg over [0, 360); f2 keeps the upper triangle phi2 >= phi1
        (Bulacu & Schomaker use 24 bins: 300 dimensions).
    legs : tuple of int
        Leg lengths in contour pixels; several give a multi-scale description.
    contours : optional
        :func:`cv.features.inkviews.contours` of this ink, when already computed.

    Returns
    -------
    (hinge_dim(...),) float32
        Concatenated histograms, each summing to 1 (all zeros for an empty image).
    """
    ink = _check_ink(ink)
    if direction_bins < 2 or hinge_bins < 2:
        raise ValueError("direction_bins and hinge_bins must be >= 2")
    if not legs or min(legs) < 1:
        raise ValueError(f"legs must be positive integers, got {legs}")
    out = np.zeros(
        hinge_dim(direction_bins=direction_bins, hinge_bins=hinge_bins, legs=legs), np.float32
    )
    chains = contour_chains(ink, min_length=2 * max(legs) + 2, contours=contours)
    if not chains:
        return out
    tri_index, n_tri = _triangle_index(hinge_bins)
    tri_flat = tri_index.ravel()
    blocks: list[NDArray] = []
    direction_map = None
    pts, leg_vectors = _leg_vectors(chains, legs)
    for leg, (v1, v2) in zip(legs, leg_vectors, strict=True):
        reach = max(leg, int(np.abs(v1).max()), int(np.abs(v2).max()))
        direction_of, hinge_of = _angle_bins(reach, direction_bins, hinge_bins)
        side = 2 * reach + 1
        key1 = (v1[:, 1] + reach) * side + (v1[:, 0] + reach)
        key2 = (v2[:, 1] + reach) * side + (v2[:, 0] + reach)
        d = direction_of[key1]
        blocks.append(np.bincount(d, minlength=direction_bins))
        a, b = hinge_of[key1], hinge_of[key2]
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        blocks.append(np.bincount(tri_flat[lo * hinge_bins + hi], minlength=n_tri))
        if direction_map is None:
            direction_map = np.full(ink.shape, -1, np.int16)
            direction_map.ravel()[pts[:, 1].astype(np.int64) * ink.shape[1] + pts[:, 0]] = d
    assert direction_map is not None
    blocks.extend(_cooccurrence(ink > 0, direction_map, direction_bins))
    pos = 0
    for block in blocks:
        total = block.sum()
        if total > 0:
            out[pos : pos + len(block)] = block / total
        pos += len(block)
    return out


def _cooccurrence(
    binary: NDArray[np.bool_], direction: NDArray[np.int16], bins: int
) -> list[NDArray]:
    """f3h and f3v: joint directions at the two contour ends of each ink run (TPAMI 2007, 3.3)."""
    result = []
    u8 = binary.view(np.uint8) if binary.dtype == bool else (binary > 0).astype(np.uint8)
    # the vertical runs are the horizontal runs of the transpose (cv2.transpose: contiguous)
    for grid, transposed in ((u8, False), (cv2.transpose(u8), True)):
        r0, c0, c1 = inkviews.row_runs(grid)  # c0: a run's first ink column, c1 one past
        if transposed:
            first, last = direction[c0, r0], direction[c1 - 1, r0]
        else:
            first, last = direction[r0, c0], direction[r0, c1 - 1]
        first, last = first.astype(np.int64), last.astype(np.int64)
        ok = (first >= 0) & (last >= 0) & (c1 - c0 >= 2)
        result.append(np.bincount(first[ok] * bins + last[ok], minlength=bins * bins))
    return result
