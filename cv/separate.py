"""Separate handwriting from printed content on a binarised slip.

Stage 1 removes ruled lines and box frames (long horizontal/vertical morphological
openings) and repairs handwriting strokes that crossed them.  Stage 2 classifies the
remaining connected components as print or handwriting.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = ["remove_lines", "separate"]


def remove_lines(
    ink: NDArray[np.bool_], *, min_length: int = 0
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Remove long horizontal and vertical lines, keep strokes that cross them.

    Parameters
    ----------
    ink : (rows, cols) bool
    min_length : int
        Shortest line (px) removed; 0 = automatic (max(40, shorter side / 12)).

    Returns
    -------
    (kept, lines) : two (rows, cols) bool arrays.
    """
    rows, cols = ink.shape
    u8 = ink.astype(np.uint8)
    if min_length <= 0:
        min_length = max(40, min(rows, cols) // 12)
    h = cv2.morphologyEx(
        u8, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (min_length, 1))
    )
    v = cv2.morphologyEx(
        u8, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (1, min_length))
    )
    lines = (h | v).astype(np.uint8)
    # Lines are often a pixel thicker at their edges than the opening catches.
    lines_d = cv2.dilate(lines, np.ones((3, 3), np.uint8))
    kept = u8 & (1 - lines_d)
    # Repair: where a stroke runs on both sides of a horizontal line, bridge it (vertical
    # closing restricted to the removed band), likewise for vertical lines.
    k = 3 + 2 * int(round(_line_thickness(h)))
    bridge_v = cv2.morphologyEx(
        kept, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (1, k))
    )
    k = 3 + 2 * int(round(_line_thickness(v.T)))
    bridge_h = cv2.morphologyEx(
        kept, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (k, 1))
    )
    repaired = kept | ((bridge_v | bridge_h) & lines_d)
    return repaired.astype(bool), lines.astype(bool)


def _line_thickness(lines_u8: NDArray[np.uint8]) -> float:
    """Median vertical run length of a horizontal-line mask (px); 1 when empty."""
    col_counts = lines_u8.sum(axis=0)
    if not col_counts.any():
        return 1.0
    n, _, stats, _ = cv2.connectedComponentsWithStats(lines_u8, connectivity=8)
    if n <= 1:
        return 1.0
    return float(
        np.median(stats[1:, cv2.CC_STAT_AREA] / np.maximum(stats[1:, cv2.CC_STAT_WIDTH], 1))
    )


def separate(flat: NDArray[np.uint8], ink: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Handwriting ink of a flattened slip.

    Parameters
    ----------
    flat : (rows, cols) uint8
        Background-flattened greyscale (paper ~255).
    ink : (rows, cols) bool
        Binarised ink of ``flat``.

    Returns
    -------
    (rows, cols) bool, True = handwriting.
    """
    if ink.shape != flat.shape:
        raise ValueError(f"ink shape {ink.shape} must match flat shape {flat.shape}")
    if not ink.any():
        return np.zeros(ink.shape, dtype=bool)
    kept, _ = remove_lines(ink)
    u8 = kept.astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(u8, connectivity=8)
    if n <= 1:
        return np.zeros(ink.shape, dtype=bool)
    area = stats[:, cv2.CC_STAT_AREA]
    w = stats[:, cv2.CC_STAT_WIDTH]
    h = stats[:, cv2.CC_STAT_HEIGHT]
    fill = area / np.maximum(w * h, 1)
    keep = area >= 4
    # Large, nearly empty frames (boxes that survived line removal) are print.
    keep &= ~((fill < 0.05) & (np.maximum(w, h) > 100))
    keep[0] = False
    return keep[labels]
