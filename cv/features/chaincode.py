"""Freeman chain-code histograms of orders 1-3 and their curvature (code difference) variants.

Implements the contour chain-code features of Siddiqi & Vincent, "Text independent writer
recognition using redundant writing patterns with contour-based orientation and curvature
features", Pattern Recognition 43(11), 2010 (section 4.1):

- f1, the 8-direction Freeman code of each step along the ink contours (8 bins);
- f2, pairs of successive codes (64 bins); f3, triples (512 bins): short-range shape;
- the curvature variants: the difference of successive codes, modulo 8 (8 bins: 0 straight,
  1 and 7 a 45-degree turn, ...), and pairs of successive differences (64 bins).

``cv2.findContours`` with ``CHAIN_APPROX_NONE`` gives 8-connected contour pixels, so each step
between successive pixels is one Freeman code; contours are closed and walked with wrap-around.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from cv.features import inkviews

__all__ = ["CHAINCODE_DIM", "chaincode_histograms", "freeman_codes"]

# f1 + f2 + f3 + curvature f1 + curvature f2
CHAINCODE_DIM = 8 + 64 + 512 + 8 + 64

# Freeman code of a step (dx, dy), indexed [dy + 1, dx + 1]; image rows grow downwards, so
# code 0 is east, 2 north (dy = -1), counter-clockwise as on paper; -1: not a unit step
_CODE_OF_STEP = np.array([[3, 2, 1], [4, -1, 0], [5, 6, 7]], np.int64)


def freeman_codes(chain: NDArray[np.integer]) -> NDArray[np.int64]:
    """Freeman codes (0-7) of the closed contour ``chain`` ((m, 2) x, y pixels), one per step
    from pixel i to pixel i + 1 (the last step back to the first pixel)."""
    pts = np.asarray(chain, np.int64).reshape(-1, 2)
    step = np.roll(pts, -1, axis=0) - pts
    if np.any(np.abs(step) > 1):
        raise ValueError("chain is not 8-connected")
    return _CODE_OF_STEP[step[:, 1] + 1, step[:, 0] + 1]


def chaincode_histograms(
    ink: NDArray[np.uint8],
    *,
    contours: Sequence[NDArray[np.int32]] | None = None,
    min_length: int = 8,
) -> NDArray[np.float32]:
    """f1, f2, f3 chain-code histograms and the curvature histograms of orders 1 and 2,
    each block a probability distribution (all zeros when there is no contour).

    Parameters
    ----------
    ink : (rows, cols) uint8
        Binary handwriting image, non-zero = ink.
    contours : optional
        :func:`cv.features.inkviews.contours` of this ink, when already computed.
    min_length : int
        Contours of fewer pixels are dropped (specks are noise, not writing).

    Returns
    -------
    (CHAINCODE_DIM,) float32
    """
    arr = np.asarray(ink)
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise ValueError(f"ink must be a 2-D uint8 array, got {arr.dtype} {arr.shape}")
    if contours is None:
        contours = inkviews.contours(inkviews.binary(arr))
    chains = [np.asarray(c).reshape(-1, 2) for c in contours if len(c) >= max(min_length, 3)]
    out = np.zeros(CHAINCODE_DIM, np.float32)
    if not chains:
        return out
    pts = np.concatenate(chains).astype(np.int64)
    lens = np.array([len(c) for c in chains])
    starts = np.repeat(np.cumsum(lens) - lens, lens)
    period = np.repeat(lens, lens)
    local = np.arange(len(pts)) - starts

    def ahead(j: int) -> NDArray[np.int64]:
        """Index of the pixel j steps further along each closed chain."""
        return starts + (local + j) % period

    step = pts[ahead(1)] - pts
    c0 = _CODE_OF_STEP[step[:, 1] + 1, step[:, 0] + 1]
    c1, c2 = c0[ahead(1)], c0[ahead(2)]
    # curvature: the turn between successive steps, in eighths of a full turn
    d0 = (c1 - c0) % 8
    d1 = d0[ahead(1)]
    blocks = (
        np.bincount(c0, minlength=8),
        np.bincount(c0 * 8 + c1, minlength=64),
        np.bincount((c0 * 8 + c1) * 8 + c2, minlength=512),
        np.bincount(d0, minlength=8),
        np.bincount(d0 * 8 + d1, minlength=64),
    )
    pos = 0
    for block in blocks:
        out[pos : pos + len(block)] = block / block.sum()
        pos += len(block)
    return out
