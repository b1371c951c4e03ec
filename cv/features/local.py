"""Local descriptors at handwriting keypoints, aggregated by VLAD.

Christlein, Bernecker, Hoenig & Angelopoulou, "Writer identification using GMM
supervectors and exemplar-SVMs", Pattern Recognition 63, 2017, and Christlein et al.
"Offline writer identification using convolutional neural network activation features"
(GCPR 2015) / "Unsupervised feature learning for writer identification" (ICDAR 2017):

- SIFT keypoints detected on the (smoothed) handwriting ink only, orientation forced to 0
  ("upright": handwriting has a canonical orientation after deskewing, and rotation
  invariance would merge differently slanted allographs);
- RootSIFT: L1-normalise then square-root each descriptor, so Euclidean distance
  approximates the Hellinger kernel (Arandjelovic & Zisserman, CVPR 2012);
- VLAD: sum of residuals to the nearest k-means centre (Jegou et al., TPAMI 2012), with
  intra-normalisation per centre (Arandjelovic & Zisserman, CVPR 2013), signed square
  root power normalisation and a final L2 normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import scipy.sparse
from numpy.typing import NDArray

from cv.features import inkviews

__all__ = ["rootsift", "dense_rootsift", "fit_codebook", "vlad_encode"]

_SIFT: cv2.SIFT | None = None


def _sift() -> cv2.SIFT:
    # one detector per process: creating it costs ~1 ms and it holds no per-image state
    global _SIFT
    if _SIFT is None:
        _SIFT = cv2.SIFT_create(contrastThreshold=0.02, edgeThreshold=20)  # type: ignore[attr-defined]
    return _SIFT


def rootsift(ink: NDArray[np.uint8], *, max_keypoints: int = 400) -> NDArray[np.float32]:
    """Upright RootSIFT descriptors at SIFT keypoints on the ink.

    Parameters
    ----------
    ink : (rows, cols) uint8
        Non-zero = ink (binary handwriting at the normalised stroke width).
    max_keypoints : int
        Keep the strongest this many keypoints (by detector response, ties by position).

    Returns
    -------
    (m, 128) float32
        One RootSIFT row per keypoint centred on or next to the ink; m may be 0.
    """
    arr = np.asarray(ink)
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise ValueError(f"ink must be a 2-D uint8 array, got {arr.dtype} {arr.shape}")
    if max_keypoints < 1:
        raise ValueError(f"max_keypoints must be >= 1, got {max_keypoints}")
    if not arr.any():
        return np.zeros((0, 128), np.float32)
    binary = (arr > 0).astype(np.uint8)
    # dark ink on white, slightly smoothed so the detector sees blobs not pixel steps
    view = cv2.GaussianBlur(255 - binary * 255, (0, 0), 1.0)
    near = cv2.dilate(binary, np.ones((5, 5), np.uint8))
    sift = _sift()
    keypoints = sift.detect(view, None)
    kept = []
    rows, cols = binary.shape
    for kp in keypoints:
        x, y = int(round(kp.pt[0])), int(round(kp.pt[1]))
        if 0 <= x < cols and 0 <= y < rows and near[y, x]:
            kept.append(kp)
    if not kept:
        return np.zeros((0, 128), np.float32)
    kept.sort(key=lambda k: (-k.response, k.pt[1], k.pt[0], k.size))
    kept = kept[:max_keypoints]
    upright = [cv2.KeyPoint(k.pt[0], k.pt[1], k.size, 0.0, k.response, k.octave) for k in kept]
    _, desc = sift.compute(view, upright)
    if desc is None:
        return np.zeros((0, 128), np.float32)
    rows = np.asarray(desc, np.float32)
    rows = rows / np.maximum(rows.sum(axis=1, keepdims=True), 1e-12)
    return np.sqrt(rows).astype(np.float32)


def dense_rootsift(
    ink: NDArray[np.uint8],
    *,
    cell: int = 4,
    step: int = 4,
    max_points: int = 600,
    smooth: NDArray[np.float32] | None = None,
    contours: Sequence[NDArray[np.int32]] | None = None,
) -> NDArray[np.float32]:
    """SIFT-like gradient descriptors sampled along the ink contours, RootSIFT-normalised.

    The SIFT detector costs 200+ ms on a slip's handwriting, far over the 40 ms budget, so
    this computes the descriptor layout of SIFT (4 x 4 cells of 8 orientation bins, Lowe
    2004) densely and cheaply: the gradient of the smoothed ink is split into 8 orientation
    channels, each box-filtered over a ``cell`` x ``cell`` window, and read at the 16 cell
    centres around each sample point.  Points are every ``step``-th contour pixel (dense
    sampling on the handwriting, as in Christlein et al. 2017's contour-based sampling),
    thinned evenly to ``max_points``.  Upright by construction: no orientation assignment.

    Parameters
    ----------
    ink : (rows, cols) uint8
        Non-zero = ink.
    cell : int
        Cell side in pixels (the descriptor covers 4 * cell pixels square).
    step : int
        Sample every step-th contour pixel.
    max_points : int
        Upper bound on descriptors per image.
    smooth, contours : optional
        :func:`cv.features.inkviews.smoothed` / :func:`~cv.features.inkviews.contours` of
        this ink, when already computed.

    Returns
    -------
    (m, 128) float32
        L1-normalised then square-rooted rows (RootSIFT); m may be 0.
    """
    arr = np.asarray(ink)
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise ValueError(f"ink must be a 2-D uint8 array, got {arr.dtype} {arr.shape}")
    if cell < 1 or step < 1 or max_points < 1:
        raise ValueError("cell, step and max_points must be >= 1")
    if contours is None:
        contours = inkviews.contours(inkviews.binary(arr))
    pts = [c.reshape(-1, 2)[::step] for c in contours if len(c) >= 2 * step]
    if not pts:
        return np.zeros((0, 128), np.float32)
    points = np.concatenate(pts)
    if len(points) > max_points:
        points = points[np.linspace(0, len(points) - 1, max_points).round().astype(np.int64)]
    # Each cell sums a cell x cell box (anchored like cv2.boxFilter) around its centre at
    # -1.5, -0.5, 0.5, 1.5 cells from the point: read only the 16 boxes around each point
    # instead of box-filtering 8 orientation channels of the whole image (~4 -> ~2 ms).
    centres = ((np.arange(4) - 1.5) * cell).round().astype(np.int64)
    offsets = centres[:, None] + (np.arange(cell) - cell // 2)[None, :]  # (cell row, pixel)
    # Off the image the ink is 0 (zero padding); when every window lies inside the image
    # (a prepared crop's margin) the Sobel's zero border reads the same: no padded copy.
    first, last = int(offsets.min()), int(offsets.max())  # a window's extent around its point
    x, y = points[:, 0], points[:, 1]
    rows, cols = arr.shape
    inside = x.min() + first >= 0 and y.min() + first >= 0
    inside = inside and x.max() + last < cols and y.max() + last < rows
    pad = 0 if inside else 3 * cell
    if smooth is None:
        smooth = inkviews.smoothed(inkviews.binary(arr))
    if pad:
        smooth = cv2.copyMakeBorder(smooth, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0.0)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_CONSTANT)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_CONSTANT)
    # only pixels with a gradient (near the strokes, a small fraction) need binning
    strength = np.abs(gx)
    strength += np.abs(gy)
    # raster-order pixels (cv2.findNonZero: faster than numpy's nonzero and its divmod)
    found = cv2.findNonZero((strength > 1e-4).view(np.uint8))
    xy = np.zeros((0, 2), np.int32) if found is None else found.reshape(-1, 2)
    idx = xy[:, 1].astype(np.int64) * gx.shape[1] + xy[:, 0]
    flat_gx, flat_gy = gx.ravel(), gy.ravel()
    gxs, gys = flat_gx[idx], flat_gy[idx]
    mag = np.sqrt(gxs * gxs + gys * gys)
    pos = (np.arctan2(-gys, gxs) % (2 * np.pi)) / (2 * np.pi) * 8
    # linear interpolation between the two nearest of 8 orientation bins, as SIFT does
    whole = np.floor(pos)
    lo = whole.astype(np.int64) & 7  # pos is in [0, 8]: the bin modulo 8
    frac = pos - whole
    # gradient pixel number + 1 at each image pixel (0 = no gradient)
    number = np.zeros(smooth.size, np.int32)
    number[idx] = np.arange(1, len(idx) + 1, dtype=np.int32)
    # each gradient pixel's weights in the 8 orientation bins (row 0: no gradient), set
    # through flat indices (half the time of a 2-D fancy assignment)
    weights = np.zeros((len(idx) + 1) * 8)
    row = np.arange(8, 8 * (len(idx) + 1), 8)
    weights[row + lo] = mag * (1 - frac)
    weights[row + ((lo + 1) & 7)] = mag * frac
    weights = weights.reshape(len(idx) + 1, 8)
    stride = smooth.shape[1]
    # a window's pixels cell by cell: (cell row, cell column, pixel row, pixel column)
    rel = (offsets[:, None, :, None] * stride + offsets[None, :, None, :]).ravel()
    base = (y.astype(np.int64) + pad) * stride + x + pad
    k = number[(base[:, None] + rel[None, :]).ravel()]
    # The cell sums as one sparse product: a 0/1 row per (point, cell) over the gradient
    # pixels in it (pixels without a gradient add row 0, zeros) times their bin weights
    # (2.7 -> 2.1 ms against two bincounts over the same pixels; same sums).
    n_box = cell * cell
    boxes = scipy.sparse.csr_matrix(
        (np.ones(len(k)), k, np.arange(0, len(k) + 1, n_box)),
        shape=(len(points) * 16, len(idx) + 1),
    )
    desc = boxes @ weights
    flat = desc.reshape(len(points), 128).astype(np.float32)
    # SIFT's clipping of large bins (0.2 after L2) limits the weight of a single edge
    flat /= np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)
    np.minimum(flat, 0.2, out=flat)
    flat /= np.maximum(flat.sum(axis=1, keepdims=True), 1e-12)
    return np.sqrt(flat, out=flat)


def fit_codebook(
    descriptors: NDArray[np.float32],
    *,
    n_clusters: int,
    random_state: int = 0,
    max_samples: int = 50_000,
) -> NDArray[np.float32]:
    """k-means centres of a sample of descriptors (the VLAD vocabulary).

    Parameters
    ----------
    descriptors : (m, d) float32
    n_clusters : int
    random_state : int
        Seeds both the subsample and k-means++.
    max_samples : int
        Subsample this many rows at most.

    Returns
    -------
    (n_clusters, d) float32
    """
    from sklearn.cluster import MiniBatchKMeans

    x = np.asarray(descriptors, np.float32)
    if x.ndim != 2 or len(x) < n_clusters:
        raise ValueError(
            f"descriptors must be (m, d) with m >= n_clusters={n_clusters}, got {x.shape}"
        )
    rng = np.random.default_rng(random_state)
    if len(x) > max_samples:
        x = x[rng.choice(len(x), max_samples, replace=False)]
    km = MiniBatchKMeans(
        n_clusters=n_clusters, random_state=random_state, n_init=1, batch_size=4096, max_iter=100
    )
    km.fit(x)
    return km.cluster_centers_.astype(np.float32)


def vlad_encode(
    descriptors: NDArray[np.float32], centres: NDArray[np.float32]
) -> NDArray[np.float32]:
    """VLAD of one image's descriptors with intra, power and L2 normalisation.

    Parameters
    ----------
    descriptors : (m, d) float32
    centres : (k, d) float32

    Returns
    -------
    (k * d,) float32
        L2-normalised, or all zeros when there are no descriptors.
    """
    c = np.asarray(centres, np.float32)
    x = np.asarray(descriptors, np.float32)
    k, d = c.shape
    if len(x) == 0:
        return np.zeros(k * d, np.float32)
    # nearest centre by ||c||^2 - 2 x.c (||x||^2 is the same for every centre)
    nearest = np.argmin((c * c).sum(1)[None, :] - 2 * x @ c.T, axis=1)
    onehot = np.zeros((len(x), k), np.float32)
    onehot[np.arange(len(x)), nearest] = 1.0
    # residual sums per centre: sum(x) - count * c, as one matrix product
    out = onehot.T @ x - onehot.sum(0)[:, None] * c
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    out = np.where(norms > 0, out / np.maximum(norms, 1e-12), 0.0)
    out = np.sign(out) * np.sqrt(np.abs(out))
    flat = out.ravel()
    n = np.linalg.norm(flat)
    return (flat / n if n > 0 else flat).astype(np.float32)
