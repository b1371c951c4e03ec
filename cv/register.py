"""Template registration: remove what a known slip design prints.

Given blank scans of the designs in use, the best-matching design is found by ORB feature
matching (Rublee et al. 2011) with Lowe's ratio test and a RANSAC homography (Fischler &
Bolles 1981); its printed ink is warped onto the slip, dilated a little to absorb
registration error and print bleed, and removed.  Handwriting strokes cut by the removal
are bridged where they continue on both sides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = ["Template", "match_template", "prepare_template", "remove_template"]

# Registration runs on images whose longer side is at most this (px), with this many ORB
# keypoints: measured on held-out slips, 640 px / 600 keypoints misregistered often enough
# to cost 12 points of handwriting precision; 1000 px / 1000 keypoints did not.
_REG_SIDE = 1000
_N_FEATURES = 1000
_MIN_INLIERS = 20
# Fraction of the warped design print that must land on the slip's ink.
MIN_PRINT_ON_INK = 0.6
# A design matched with this many RANSAC inliers is certain; the others are not tried.
_SURE_INLIERS = 120


@dataclass(frozen=True)
class Template:
    """A blank design, prepared once: its print mask and ORB features at reduced scale."""

    ink: NDArray[np.bool_]  # (rows, cols) printed ink of the blank design
    scale: float  # registration scale of the design
    keypoints: NDArray[np.float32]  # (n, 2) x, y at registration scale
    descriptors: NDArray[np.uint8] | None  # (n, 32) ORB


def _small(image: NDArray[np.uint8]) -> tuple[NDArray[np.uint8], float]:
    rows, cols = image.shape
    s = min(1.0, _REG_SIDE / max(rows, cols))
    if s < 1.0:
        image = cv2.resize(
            image, (max(1, round(cols * s)), max(1, round(rows * s))), interpolation=cv2.INTER_AREA
        )
    return image, s


def _orb(image: NDArray[np.uint8]) -> tuple[NDArray[np.float32], NDArray[np.uint8] | None]:
    orb = cv2.ORB_create(nfeatures=_N_FEATURES, fastThreshold=10)
    kps, desc = orb.detectAndCompute(image, None)
    pts = np.array([k.pt for k in kps], dtype=np.float32).reshape(-1, 2)
    return pts, desc


def prepare_template(image: NDArray[np.uint8]) -> Template:
    """Binarise a blank design and compute its registration features.

    Parameters
    ----------
    image : (rows, cols) uint8
        A blank (unfilled) scan of the slip design.
    """
    from cv.preprocess import _check_image, binarise, flatten_background

    image = _check_image(image, "template")
    flat = flatten_background(image)
    ink = binarise(flat)
    small, s = _small(flat)
    pts, desc = _orb(small)
    return Template(ink=ink, scale=s, keypoints=pts, descriptors=desc)


def match_template(
    flat: NDArray[np.uint8], templates: Sequence[Template]
) -> tuple[int, NDArray[np.float64] | None, int]:
    """Find the design that best matches a slip.

    Parameters
    ----------
    flat : (rows, cols) uint8
        Flattened slip.
    templates : sequence of Template

    Returns
    -------
    (index, homography, inliers) : index of the best design (-1 if none matched), the 3x3
    homography mapping design pixels to slip pixels (full resolution), RANSAC inlier count.
    """
    small, s = _small(flat)
    pts, desc = _orb(small)
    best = (-1, None, 0)
    if desc is None or len(pts) < 8:
        return best
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    candidates = []
    for i, t in enumerate(templates):
        if t.descriptors is None or len(t.keypoints) < 8:
            continue
        pairs = matcher.knnMatch(t.descriptors, desc, k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.8 * p[1].distance]
        if len(good) >= _MIN_INLIERS:
            candidates.append((len(good), i, good))
    # RANSAC only for the designs with the most ratio-test matches: on a wrong design it
    # runs to its iteration cap, which dominated the time (80 ms per design).
    candidates.sort(key=lambda c: -c[0])
    for _, i, good in candidates[:2]:
        t = templates[i]
        src = t.keypoints[[m.queryIdx for m in good]] / t.scale
        dst = pts[[m.trainIdx for m in good]] / s
        hmat, inl = cv2.findHomography(
            src, dst, cv2.RANSAC, 4.0 / s, maxIters=500, confidence=0.995
        )
        if hmat is None or inl is None:
            continue
        n_in = int(inl.sum())
        if n_in >= _MIN_INLIERS and n_in > best[2]:
            best = (i, hmat, n_in)
            if n_in >= _SURE_INLIERS:
                break
    return best


def remove_template(
    flat: NDArray[np.uint8],
    ink: NDArray[np.bool_],
    *,
    templates: Sequence[NDArray[np.uint8] | Template],
    tolerance: int = 2,
    within: NDArray[np.bool_] | None = None,
) -> NDArray[np.bool_]:
    """A mask of a slip minus the registered print of its design.

    Parameters
    ----------
    flat : (rows, cols) uint8
        Flattened slip.
    ink : (rows, cols) bool
        Its binarised ink (used to verify the registration).
    templates : sequence of (r, c) uint8 or Template
        Blank designs (raw scans are prepared on the fly; prepare once to save time).
    tolerance : int
        Dilation (px) of the warped print, absorbing registration error.
    within : (rows, cols) bool, optional
        The mask to remove print from (e.g. the separator's handwriting); default ``ink``.

    Returns
    -------
    (rows, cols) bool; ``within`` unchanged when no design matches or the registration
    fails verification.
    """
    target = ink if within is None else within
    prepared = [t if isinstance(t, Template) else prepare_template(t) for t in templates]
    if not prepared:
        return target
    idx, hmat, _ = match_template(flat, prepared)
    if idx < 0 or hmat is None:
        return target
    rows, cols = ink.shape
    warped = cv2.warpPerspective(
        prepared[idx].ink.astype(np.uint8), hmat, (cols, rows), flags=cv2.INTER_NEAREST
    )
    k = 2 * tolerance + 1
    printed = cv2.dilate(warped, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    u8 = ink.astype(np.uint8)
    # Verify: a correct registration puts most of the design's print on ink.  A wrong one
    # would cut print into fragments that look like handwriting, so it is not used.
    n_print = int(np.count_nonzero(warped))
    if n_print == 0 or np.count_nonzero(cv2.dilate(u8, np.ones((k, k), np.uint8)) & warped) < (
        MIN_PRINT_ON_INK * n_print
    ):
        return target
    t8 = target.astype(np.uint8)
    kept = t8 & (1 - printed)
    # Bridge handwriting strokes cut where they crossed print: a closing of what is left,
    # accepted only inside the removed print and only on the original mask.
    kk = 2 * k + 1
    closed = cv2.morphologyEx(
        kept, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kk, kk))
    )
    repaired = kept | (closed & printed & t8)
    return repaired.astype(bool)
