"""Views of a prepared ink image that several feature families read.

:func:`cv.embed.extract_raw` computes each once per slip and hands it to the families
(LBP and dense RootSIFT both read the smoothed ink, unless the descriptors read the grey,
``descriptor_ink``; contour hinge and dense RootSIFT both walk the contours: ~0.5 ms per slip
saved); a family called on its own computes them itself, identically.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = ["binary", "components", "contours", "smoothed", "smoothed_grey"]


def binary(ink: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """0/1 uint8 ink mask (non-zero = ink)."""
    return (np.asarray(ink) > 0).astype(np.uint8)


# The kernel cv2.GaussianBlur makes for sigma 1 on float32 (9 taps: 4 sigma each side).
_GAUSSIAN_1PX = cv2.getGaussianKernel(9, 1.0, cv2.CV_32F)


def smoothed(binary01: NDArray[np.uint8]) -> NDArray[np.float32]:
    """The 0/1 ink blurred by a Gaussian of sigma 1 px, float32, same shape.

    ``cv2.GaussianBlur`` of the mask as float32, filtered straight from uint8: the same
    separable float32 sums (products of 0/1 with the taps are exact either way) without a
    float copy of the image (~0.13 ms less per call).
    """
    u8 = np.asarray(binary01, np.uint8)
    if min(u8.shape) < 2:  # GaussianBlur filters a single row or column in 1-D only
        return cv2.GaussianBlur(u8.astype(np.float32), (0, 0), 1.0)
    return cv2.sepFilter2D(u8, cv2.CV_32F, _GAUSSIAN_1PX, _GAUSSIAN_1PX)


def smoothed_grey(grey: NDArray[np.uint8], ink: NDArray[np.uint8]) -> NDArray[np.float32]:
    """The handwriting's darkness from its flattened grey (0 = paper, 1 = black), blurred as
    :func:`smoothed`.

    The binary ink's outline moves with the resampling grid (a slip resized by 0.1 % kept
    only 0.64 of its VLAD's cosine, bench/ACCURACY.md session 3); the grey's anti-aliased
    rims keep where within a pixel an edge lies.  The darkness is not rescaled to the slip's
    own ink: RootSIFT normalises each descriptor anyway, and rescaling it (the darkest
    quarter of the ink read as 1) calibrated the clustering stricter (session 24).

    Parameters
    ----------
    grey : (rows, cols) uint8
        The crop's flattened grey, dark ink on white, everything but the handwriting and its
        rims whitened (``Prepared.grey``).
    ink : (rows, cols) uint8
        Non-zero = handwriting ink, same shape (only checked: the rims lie outside it).
    """
    g = np.asarray(grey)
    if g.shape != np.shape(ink):
        raise ValueError(f"grey and ink must have equal shapes, got {g.shape}, {np.shape(ink)}")
    level = (255.0 - g.astype(np.float32)) / np.float32(255.0)
    if min(level.shape) < 2:
        return cv2.GaussianBlur(level, (0, 0), 1.0)
    return cv2.sepFilter2D(level, cv2.CV_32F, _GAUSSIAN_1PX, _GAUSSIAN_1PX)


def contours(binary01: NDArray[np.uint8]) -> Sequence[NDArray[np.int32]]:
    """Every contour chain of the ink (``cv2.findContours``, RETR_LIST, no approximation)."""
    found, _ = cv2.findContours(binary01, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    return found


def components(mask: NDArray[np.uint8]) -> tuple[int, NDArray[np.int32], NDArray[np.int32]]:
    """8-connected components of a uint8 mask (non-zero = foreground): ``(n, labels, stats)``
    exactly as ``cv2.connectedComponentsWithStats(mask, 8, cv2.CV_32S)`` returns them (raster-
    order labels, row 0 the background, stats x, y, width, height, area).

    OpenCV's labelling alone costs a tenth of its labelling with statistics (OpenCV 5.1, one
    thread: 0.2 against 2.1 ms on a 0.5 MP handwriting crop); reading the statistics off the
    foreground pixels here halves the total.  Block-based labelling (Grana et al. 2010), whose
    labels equal the default algorithm's.
    """
    n, labels = cv2.connectedComponentsWithAlgorithm(mask, 8, cv2.CV_32S, cv2.CCL_GRANA)
    rows, cols = mask.shape
    stats = np.zeros((n, 5), np.int32)
    # foreground pixels in raster order (cv2.findNonZero: 10x faster than numpy on uint8)
    found = cv2.findNonZero(mask)
    xy = np.zeros((0, 2), np.int32) if found is None else found.reshape(-1, 2)
    x, y = xy[:, 0], xy[:, 1]
    lab = labels.ravel()[y.astype(np.int64) * cols + x]  # a 1-D gather: 2x a 2-D one
    stats[:, 4] = np.bincount(lab, minlength=n)
    stats[0, 4] = rows * cols - len(xy)
    # bounding boxes: unbuffered min / max per label (numpy >= 1.25 runs ufunc.at fast)
    lo = np.full((2, n), max(rows, cols), np.int32)
    hi = np.full((2, n), -1, np.int32)
    np.minimum.at(lo[0], lab, x)
    np.minimum.at(lo[1], lab, y)
    np.maximum.at(hi[0], lab, x)
    np.maximum.at(hi[1], lab, y)
    # the background's box: the rows and columns holding a background pixel (the whole
    # image when each border row and column has one, as around a crop's margin)
    if max(mask[0].min(), mask[-1].min(), mask[:, 0].min(), mask[:, -1].min()) == 0:
        bg_rows, bg_cols = np.array([0, rows - 1]), np.array([0, cols - 1])
    else:
        bg_rows = np.flatnonzero(mask.min(axis=1) == 0)
        bg_cols = np.flatnonzero(mask.min(axis=0) == 0)
    if len(bg_rows):
        lo[:, 0] = bg_cols[0], bg_rows[0]
        hi[:, 0] = bg_cols[-1], bg_rows[-1]
    stats[:, :2] = lo.T
    stats[:, 2:4] = (hi - lo + 1).T
    if not len(bg_rows):  # no background pixel: OpenCV's untouched box
        stats[0, :4] = -1, np.iinfo(np.int32).max, 0, 0
    return n, labels, stats


def row_runs(
    grid: NDArray[np.uint8],
) -> tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.int32]]:
    """Runs of non-zero pixels along the rows: (row, first column, one past the last column).

    One zero column is put before each row so every run starts and ends inside its row; the
    run boundaries of the flattened image then alternate start, end (row-major scan), and
    ``cv2.findNonZero`` reads them off as (column, row) pairs (faster than numpy's nonzero
    and a divmod).
    """
    rows, cols = grid.shape
    padded = np.zeros((rows, cols + 1), np.uint8)
    padded[:, 1:] = grid
    flat = padded.ravel()
    edges = np.empty(flat.size, np.uint8)
    np.not_equal(flat[1:], flat[:-1], out=edges[:-1].view(bool))
    edges[-1] = flat[-1] != 0
    found = cv2.findNonZero(edges.reshape(rows, cols + 1))
    at = np.zeros((0, 2), np.int32) if found is None else found.reshape(-1, 2)
    return at[0::2, 1], at[0::2, 0], at[1::2, 0]
