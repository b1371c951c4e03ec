"""Views of a prepared ink image that several feature families read.

:func:`cv.embed.extract_raw` computes each once per slip and hands it to the families
(LBP and dense RootSIFT both read the smoothed ink, contour hinge and dense RootSIFT both
walk the contours: ~0.5 ms per slip saved); a family called on its own computes them
itself, identically.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = ["binary", "contours", "smoothed"]


def binary(ink: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """0/1 uint8 ink mask (non-zero = ink)."""
    return (np.asarray(ink) > 0).astype(np.uint8)


def smoothed(binary01: NDArray[np.uint8]) -> NDArray[np.float32]:
    """The 0/1 ink blurred by a Gaussian of sigma 1 px, float32, same shape."""
    return cv2.GaussianBlur(binary01.astype(np.float32), (0, 0), 1.0)


def contours(binary01: NDArray[np.uint8]) -> Sequence[NDArray[np.int32]]:
    """Every contour chain of the ink (``cv2.findContours``, RETR_LIST, no approximation)."""
    found, _ = cv2.findContours(binary01, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    return found


def row_runs(
    grid: NDArray[np.uint8],
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Runs of non-zero pixels along the rows: (row, first column, one past the last column).

    One zero column is put between rows so every run starts and ends inside its row; the
    run boundaries of the flattened image then alternate start, end (row-major scan).
    """
    rows, cols = grid.shape
    padded = np.zeros((rows, cols + 1), np.uint8)
    padded[:, 1:] = grid
    flat = padded.ravel()
    edges = np.empty(flat.size, bool)
    np.not_equal(flat[1:], flat[:-1], out=edges[:-1])
    edges[-1] = flat[-1] != 0
    at = np.flatnonzero(edges)
    start, end = at[0::2], at[1::2]
    r0, c0 = np.divmod(start, cols + 1)
    return r0, c0, end - r0 * (cols + 1)
