"""Separate handwriting from printed content on a binarised slip.

Stage 1 removes ruled, dashed and box lines (gap closing then long horizontal/vertical
morphological openings, as in table-form line removal) and bridges handwriting strokes that
crossed them.  Stage 2 classifies the remaining connected components as print or
handwriting from shape, stroke-width and alignment features: printed glyphs share exact
baselines, cap heights and stroke widths, handwriting does not.  The classifier is a small
multi-layer perceptron fitted on generated fit-split slips (``python -m cv.separate --train``),
most of them drawn on procedurally randomised designs so it learns what print looks like
rather than where four designs put it, and stored as plain arrays in
``cv/models/separator.npz``; without it a conservative rule set is used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from cv.features import inkviews

__all__ = [
    "FEATURE_NAMES",
    "Separator",
    "component_features",
    "default_separator",
    "remove_creases",
    "remove_lines",
    "separate",
]

MODEL_PATH = Path(__file__).resolve().parent / "models" / "separator.npz"
UNIPEN_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "unipen-dev"
FORMAT_VERSION = 1
CLIP = 5.0

# A generated fit set (writers, seed, randomised designs) whose slips get two crops of the fit
# UNIPEN writers each pasted on (collect_pasted): real hands on printed forms (session 19).
PASTED_SET: tuple[int, int, float] = (200, 54, 0.7)
# Slips written with real handwriting only (sample_slips.real_hands: 1-3 crops of one fit
# UNIPEN writer in a design's fields, strokes at a biro's width, through the scanner model,
# a till stamp on most; fit designs, 70 % randomised; each writer's size 0.3-0.6 of the
# crops'): (slips, seed), for ``--real``.  Measured in session 20 and not the default: real
# hands on slips keep 80 % of their pixels instead of 75 %, but a design's hatched stripe
# touched by real writing was kept, and one sample slip's separation changed at 0.75x
# resolution (bench/ACCURACY.md).
REAL_SET: tuple[int, int] = (600, 61)
# Resize factors of the pasted crops: UNIPEN's crops are written about 2-3x larger than the
# handwriting on a generated slip (capitals 100+ px tall against ~40); pasted at full size
# they taught the classifier that big clean capitals are handwriting, and it kept printed
# headings (generated pixel precision 0.957 -> 0.932).
PASTED_SCALE: tuple[float, float] = (0.3, 0.6)

FEATURE_NAMES = (
    "log_area",
    "log_width",
    "log_height",
    "fill",
    "log_aspect",
    "stroke_mean",
    "stroke_cv",
    "log_rel_height",
    "log_rel_stroke",
    "same_bottom",
    "same_top",
    "same_bottom_height",
    "darkness",
    "darkness_std",
    "rel_darkness",
    "neighbours",
    "log_stroke_per_height",
    "boundary_ratio",
    # features of the component's text group (components joined by small gaps on a line)
    "group_size",
    "group_bottom_std",
    "group_log_height_std",
    "group_slope",
    "group_stroke_cv",
    "group_darkness_std",
    "group_same_bottom",
    "group_log_rel_height",
    "rel_bottom_in_group",
    "log_height_in_group",
    # straightness: printed glyphs have exactly vertical/horizontal stems after deskew
    "straight_v",
    "straight_h",
    "group_straight_v",
    "group_straight_h",
    # repetition: printed glyphs and patterns recur pixel-identical (same box and ink area),
    # handwritten letters never quite do
    "twins",
    "group_twins",
    # printed shapes: hollow boxes (ink hugging the bounding box), straight bars of any
    # direction (ink filling its oriented box), parallel repeats (hatching ////)
    "border_frac",
    "oriented_fill",
    "log_elongation",
    "parallel",
    "group_border_frac",
)


# --------------------------------------------------------------------------- lines


def remove_lines(
    ink: NDArray[np.bool_],
    *,
    min_length: int = 0,
    max_gap: int = 0,
    max_thickness: int = 0,
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Remove long horizontal and vertical lines (solid or dashed), keep strokes crossing them.

    Parameters
    ----------
    ink : (rows, cols) bool
    min_length : int
        Shortest line (px) removed; 0 = automatic: max(40, shorter side / 12, 20 stroke
        widths), so long handwritten strokes (t-bars, underlines) of a plain crop survive.
    max_gap : int
        Dash gaps up to this (px) are closed before the opening; 0 = automatic
        (shorter side / 100, at least 3).
    max_thickness : int
        Line candidates thicker than this (px) are handwriting runs joined by the gap
        closing, not lines; 0 = automatic (shorter side / 90, at least 4).

    Returns
    -------
    (kept, lines) : two (rows, cols) bool arrays: the ink without lines (strokes bridged
    across removed lines) and the removed line pixels.
    """
    rows, cols = ink.shape
    short = min(rows, cols)
    # 0/255 uint8 throughout: OpenCV's bitwise ops and counts are several times faster
    # than numpy's on these arrays (this runs on every slip).
    u8 = (
        ink.view(np.uint8) * np.uint8(255)
        if ink.dtype == bool
        else (ink > 0).astype(np.uint8) * 255
    )
    one = np.ones((3, 3), np.uint8)
    if min_length <= 0:
        # Stroke width ~ 2 * area / boundary length (cheap; print and hand mixed).
        n_ink = cv2.countNonZero(u8)
        edge = n_ink - cv2.countNonZero(cv2.erode(u8, one))
        sw = 2.0 * n_ink / max(edge, 1)
        min_length = int(max(40, short // 12, 20 * sw))
    # A line element longer than the image finds nothing and costs seconds (solid pages).
    min_length = max(3, min(min_length, max(rows, cols)))
    if max_gap <= 0:
        max_gap = max(3, short // 100)
    if max_thickness <= 0:
        max_thickness = max(4, short // 90)
    # Odd element sizes keep the anchor centred (even ones shift the result by a pixel).
    min_length |= 1
    max_gap += max_gap % 2
    rect = cv2.getStructuringElement
    found = []
    for horizontal in (True, False):
        gk = (max_gap + 1, 1) if horizontal else (1, max_gap + 1)
        lk = (min_length, 1) if horizontal else (1, min_length)
        closed = cv2.morphologyEx(u8, cv2.MORPH_CLOSE, rect(cv2.MORPH_RECT, gk))
        runs = cv2.morphologyEx(closed, cv2.MORPH_OPEN, rect(cv2.MORPH_RECT, lk))
        if not cv2.countNonZero(runs):
            found.append(np.zeros_like(u8))
            continue
        # A line is thin across its direction; stacked runs (a word whose gaps the closing
        # joined) are not: whatever survives an opening across the line direction longer
        # than max_thickness is such a stack and is dropped with its surroundings.
        ak = (1, max_thickness + 1) if horizontal else (max_thickness + 1, 1)
        thick = cv2.morphologyEx(runs, cv2.MORPH_OPEN, rect(cv2.MORPH_RECT, ak))
        if cv2.countNonZero(thick):
            t2 = 2 * max_thickness + 1
            grow = (min_length, t2) if horizontal else (t2, min_length)
            runs = cv2.bitwise_and(
                runs, cv2.bitwise_not(cv2.dilate(thick, rect(cv2.MORPH_RECT, grow)))
            )
        found.append(cv2.bitwise_and(runs, u8))
    h, v = found
    lines = cv2.bitwise_or(h, v)
    if not cv2.countNonZero(lines):
        return ink.astype(bool, copy=True), np.zeros(ink.shape, bool)
    # Lines are often a pixel thicker at their edges than the opening catches.
    lines_d = cv2.bitwise_and(cv2.dilate(lines, one), u8)
    kept = cv2.bitwise_and(u8, cv2.bitwise_not(lines_d))
    # Repair: where a stroke continues on both sides of a removed horizontal line bridge it
    # with a vertical closing restricted to the removed pixels, likewise for vertical lines.
    k = 3 + 2 * max_thickness
    bridge_v = cv2.morphologyEx(kept, cv2.MORPH_CLOSE, rect(cv2.MORPH_RECT, (1, k)))
    bridge_h = cv2.morphologyEx(kept, cv2.MORPH_CLOSE, rect(cv2.MORPH_RECT, (k, 1)))
    bridge = cv2.bitwise_or(
        cv2.bitwise_and(bridge_v, cv2.dilate(h, one)),
        cv2.bitwise_and(bridge_h, cv2.dilate(v, one)),
    )
    repaired = cv2.bitwise_and(cv2.bitwise_or(kept, bridge), u8)
    return repaired > 0, lines_d > 0


#: Crease candidates: straight lines within this many degrees of the page's axes (a fold runs
#: along the paper, which deskewing leaves within a few degrees of the frame).
CREASE_MAX_TILT = 10.0


def remove_creases(
    ink: NDArray[np.bool_],
    *,
    band: float = 2.0,
    purity: float = 0.9,
    min_length: float = 0.2,
    min_span: float = 0.5,
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Remove a paper fold's crease from the ink of a page without a printed form.

    A fold leaves a faint straight line across the whole page, which binarisation breaks
    into dashes; slightly tilted, it escapes :func:`remove_lines` (axis-aligned openings),
    and on a sheet without print every component is kept as handwriting, so a few words
    on folded paper were described mostly by their crease (sheets of different writers
    linked through it).  A crease is found as a Hough line near the page's axes whose
    components lie almost wholly (``purity``) within ``band`` px of it, together at least
    ``min_length`` of the page's extent along the line long and spread over ``min_span`` of
    it; only those components are removed (a letter the crease runs through keeps its ink).

    Returns
    -------
    (kept, creases) : two (rows, cols) bool arrays.
    """
    rows, cols = ink.shape
    none = np.zeros(ink.shape, dtype=bool)
    u8 = ink.astype(np.uint8)
    if not u8.any():
        return ink.astype(bool, copy=True), none
    tilt = np.radians(CREASE_MAX_TILT)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(u8, connectivity=8)
    width, height = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]
    removed = np.zeros(n, dtype=bool)
    # theta is the normal's angle: ~pi/2 for a horizontal line, ~0 or ~pi for a vertical one
    for horizontal, ranges in (
        (True, ((np.pi / 2 - tilt, np.pi / 2 + tilt),)),
        (False, ((0.0, tilt), (np.pi - tilt, np.pi))),
    ):
        # only pieces thin across such a line can lie within its band: the transform runs on
        # them alone (a plain crop's letters never vote), at angles near the axis only
        across, along_size = (height, width) if horizontal else (width, height)
        thin = across <= 2 * band + 1 + along_size * np.tan(tilt)
        thin[0] = False
        if not thin.any():
            continue
        pieces = thin[labels]
        extent = cols if horizontal else rows
        votes = max(20, int(min_length * extent / 3))
        hits = [
            cv2.HoughLines(pieces.view(np.uint8), 1, np.pi / 360, votes, min_theta=lo, max_theta=hi)
            for lo, hi in ranges
        ]
        found = [h[:8, 0] for h in hits if h is not None]
        if not found:
            continue
        ys, xs = np.nonzero(pieces)
        lab = labels[ys, xs]
        sizes = np.bincount(lab, minlength=n)
        along = xs if horizontal else ys
        for rho, theta in np.concatenate(found):
            near = np.abs(xs * np.cos(theta) + ys * np.sin(theta) - rho) <= band
            inside = np.bincount(lab[near], minlength=n)
            pure = thin & (inside >= purity * np.maximum(sizes, 1))
            if not pure.any():
                continue
            on_line = pure[lab]
            first = np.full(n, np.iinfo(np.int64).max)
            last = np.full(n, -1)
            np.minimum.at(first, lab[on_line], along[on_line])
            np.maximum.at(last, lab[on_line], along[on_line])
            length = float((last[pure] - first[pure] + 1).sum())
            span = float(last[pure].max() - first[pure].min() + 1)
            if length >= min_length * extent and span >= min_span * extent:
                removed |= pure
    if not removed.any():
        return ink.astype(bool, copy=True), none
    creases = removed[labels]
    return ink & ~creases, creases


# --------------------------------------------------------------------------- features


def _near_counts(keys: NDArray[np.int64], offsets: list[int]) -> NDArray[np.float64]:
    """For each key, how many keys (itself excluded) equal key + o for some o in offsets."""
    order = np.sort(keys)
    # all offsets in one pair of searches (integer counts: the sum is exact in any order)
    q = keys[None, :] + np.asarray(offsets, np.int64)[:, None]
    hits = np.searchsorted(order, q, side="right") - np.searchsorted(order, q, side="left")
    return hits.sum(axis=0).astype(np.float64) - 1.0


@dataclass(frozen=True)
class Layout:
    """Where components sit, for context features: text group id and a coarse grid cell."""

    gid: NDArray[np.int64]  # (m,) text-group id
    cy: NDArray[np.int64]  # (m,) grid row of the component centre
    cx: NDArray[np.int64]  # (m,) grid column
    shape: tuple[int, int]  # grid shape
    area: NDArray[np.float64]  # (m,) ink pixels


def component_features(
    flat: NDArray[np.uint8],
    labels: NDArray[np.int32],
    stats: NDArray[np.int32],
) -> NDArray[np.float32]:
    """Per-component features for the print/handwriting classifier.

    Parameters
    ----------
    flat : (rows, cols) uint8
        Flattened greyscale (paper ~255).
    labels : (rows, cols) int32
        Connected-component labels, 0 = background (from ``cv2.connectedComponentsWithStats``).
    stats : (n, 5) int32
        The matching statistics; row 0 is the background.

    Returns
    -------
    (n - 1, len(FEATURE_NAMES)) float32, one row per component 1..n-1.
    """
    return _component_table(flat, labels, stats)[0]


def _component_table(
    flat: NDArray[np.uint8],
    labels: NDArray[np.int32],
    stats: NDArray[np.int32],
    *,
    ink_pixels: list[NDArray[np.int64]] | None = None,
) -> tuple[NDArray[np.float32], Layout]:
    """Features of :func:`component_features` and the components' :class:`Layout`.

    ``ink_pixels``, when given, receives the flat indices of the labelled pixels and their
    labels (already computed here; :func:`separate` paints its mask from them).

    Parameters
    ----------
    flat : (rows, cols) uint8
        Flattened greyscale (paper ~255).
    labels : (rows, cols) int32
        Connected-component labels, 0 = background (from ``cv2.connectedComponentsWithStats``).
    stats : (n, 5) int32
        The matching statistics; row 0 is the background.

    Returns
    -------
    (n - 1, len(FEATURE_NAMES)) float32, one row per component 1..n-1.
    """
    n = stats.shape[0]
    m = n - 1
    if m <= 0:
        z = np.zeros(0, np.int64)
        return np.zeros((0, len(FEATURE_NAMES)), np.float32), Layout(z, z, z, (1, 1), z * 1.0)
    st = stats[1:].astype(np.float64)
    x, y, w, h, area = st[:, 0], st[:, 1], st[:, 2], st[:, 3], st[:, 4]
    fg_b = labels > 0
    fg = fg_b.view(np.uint8)
    # Per-pixel quantities are read only at ink pixels (flat indices), then summed per
    # component with bincount. (numpy's nonzero is 3x faster on bool than on uint8.)
    idx = np.flatnonzero(fg_b)
    lab_f = labels.ravel()[idx]
    if ink_pixels is not None:
        ink_pixels += [idx, lab_f]
    dist = cv2.distanceTransform(fg, cv2.DIST_L2, 3)
    dist_f = dist.ravel()[idx]
    # Ridge pixels (local maxima of the distance) give the local half stroke width.
    ridge_f = dist_f >= cv2.dilate(dist, np.ones((3, 3), np.uint8)).ravel()[idx]
    lab_r = lab_f[ridge_f]
    d_r = dist_f[ridge_f].astype(np.float64)
    cnt = np.bincount(lab_r, minlength=n)[1:].astype(np.float64)
    s1 = np.bincount(lab_r, weights=d_r, minlength=n)[1:]
    s2 = np.bincount(lab_r, weights=d_r * d_r, minlength=n)[1:]
    cnt_safe = np.maximum(cnt, 1.0)
    sw_mean = np.where(cnt > 0, s1 / cnt_safe, 0.5)
    sw_var = np.maximum(s2 / cnt_safe - sw_mean**2, 0.0)
    sw_cv = np.sqrt(sw_var) / np.maximum(sw_mean, 0.5)
    # Grey level of the ink: print toner is uniform, pen pressure varies.
    dark = 255.0 - flat.ravel()[idx].astype(np.float64)
    g1 = np.bincount(lab_f, weights=dark, minlength=n)[1:]
    g2 = np.bincount(lab_f, weights=dark * dark, minlength=n)[1:]
    a_safe = np.maximum(area, 1.0)
    g_mean = g1 / a_safe
    g_std = np.sqrt(np.maximum(g2 / a_safe - g_mean**2, 0.0))
    # Boundary pixels per area: ragged vs clean outlines.
    inner_f = cv2.erode(fg, np.ones((3, 3), np.uint8)).ravel()[idx]
    e_cnt = np.bincount(lab_f[inner_f == 0], minlength=n)[1:].astype(np.float64)

    big = area >= 10
    med_h = float(np.median(h[big])) if big.any() else float(np.median(h))
    med_sw = float(np.median(sw_mean[big])) if big.any() else float(np.median(sw_mean))
    med_dark = float(np.median(g_mean[big])) if big.any() else float(np.median(g_mean))
    bottom = (y + h).astype(np.int64)
    top = y.astype(np.int64)
    hh = h.astype(np.int64)
    valid = h >= 4
    # Alignment counts (printed glyphs sit on a shared baseline with shared heights); keys
    # of components too small to be glyphs are moved out of the way.
    big_off = np.int64(1 << 20)
    kb = np.where(valid, bottom, -big_off - np.arange(m))
    kt = np.where(valid, top, -big_off - np.arange(m))
    same_bottom = _near_counts(kb, [-1, 0, 1])
    same_top = _near_counts(kt, [-1, 0, 1])
    kbh = np.where(valid, bottom * 8192 + hh, -big_off * 8192 - np.arange(m))
    same_bh = _near_counts(kbh, [db * 8192 + dh for db in (-1, 0, 1) for dh in (-1, 0, 1)])
    # Local density: components whose centres share a coarse cell (small print is dense).
    cell = max(8.0, 2.0 * med_h)
    cx = ((x + w / 2) // cell).astype(np.int64)
    cy = ((y + h / 2) // cell).astype(np.int64)
    neighbours = _near_counts(cy * 100000 + cx, [0])

    # Text groups: components joined by gaps up to ~one median height on the same line.
    # Printed text lines sit on one exact baseline (slope 0 after deskew) with identical
    # glyph heights, pen and darkness; handwriting drifts, wobbles and varies.
    cell = max(2, int(round(med_h / 2)))
    gr, gc = -(-fg.shape[0] // cell), -(-fg.shape[1] // cell)
    gy = np.minimum(((y + h / 2) // cell).astype(np.int64), gr - 1)
    gx0 = (x // cell).astype(np.int64)
    gx1 = np.minimum(((x + w - 1) // cell).astype(np.int64), gc - 1)
    # Each component marks its column span on its centre row: +1/-1 then a running sum.
    marks = np.zeros((gr, gc + 1), np.int32)
    np.add.at(marks, (gy[big], gx0[big]), 1)
    np.add.at(marks, (gy[big], gx1[big] + 1), -1)
    grid = (np.cumsum(marks[:, :gc], axis=1) > 0).astype(np.uint8)
    grid = cv2.dilate(grid, np.ones((1, 3), np.uint8))
    _, glab = cv2.connectedComponents(grid, connectivity=4)
    gid = glab[gy, np.minimum(((x + w / 2) // cell).astype(np.int64), gc - 1)].astype(np.int64)
    # Components outside any group (specks) form their own groups.
    ng0 = int(gid.max()) + 1
    lone = gid == 0
    gid[lone] = ng0 + np.arange(int(lone.sum()))
    ng = int(gid.max()) + 1
    wt = big.astype(np.float64) + 1e-3

    wt_sum = np.bincount(gid, weights=wt, minlength=ng)[gid]  # the same for every gmean

    def gmean(v: NDArray[np.float64]) -> NDArray[np.float64]:
        num = np.bincount(gid, weights=wt * v, minlength=ng)[gid]
        return num / wt_sum

    gsize = np.bincount(gid, weights=big.astype(np.float64), minlength=ng)[gid]
    b_m = gmean(bottom.astype(np.float64))
    b_sd = np.sqrt(np.maximum(gmean(bottom.astype(np.float64) ** 2) - b_m**2, 0.0))
    lh = np.log(h)
    lh_m = gmean(lh)
    lh_sd = np.sqrt(np.maximum(gmean(lh**2) - lh_m**2, 0.0))
    xc = x + w / 2
    xc_m = gmean(xc)
    cov = gmean(xc * bottom) - xc_m * b_m
    var = gmean(xc * xc) - xc_m**2
    slope = np.where(var > 1.0, cov / np.maximum(var, 1.0), 0.0)
    sw_m = gmean(sw_mean)
    sw_sd = np.sqrt(np.maximum(gmean(sw_mean**2) - sw_m**2, 0.0))
    d_m = gmean(g_mean)
    d_sd = np.sqrt(np.maximum(gmean(g_mean**2) - d_m**2, 0.0))
    sb_m = gmean((same_bottom > 0).astype(np.float64))
    med = max(med_h, 1.0)

    # Straight stems: ink in vertical / horizontal runs at least ~0.4 median glyph heights
    # long (morphological opening with a line element), per component and per group.
    ln = max(3, int(round(0.4 * med_h)))
    sv = cv2.morphologyEx(fg, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (1, ln)))
    sh = cv2.morphologyEx(fg, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (ln, 1)))
    st_v = np.bincount(lab_f[sv.ravel()[idx] > 0], minlength=n)[1:] / a_safe
    st_h = np.bincount(lab_f[sh.ravel()[idx] > 0], minlength=n)[1:] / a_safe

    # Twins: other components with the same bounding box (+-1 px: scans blur and resample)
    # and ink area within 3 %.
    ai = area.astype(np.int64)
    wi, hi = w.astype(np.int64), h.astype(np.int64)
    key = ((wi * 4096 + hi) << 22) + ai
    tol = np.maximum(1, (0.03 * area).astype(np.int64))
    srt = np.sort(key)
    dw, dh = (np.repeat([-1, 0, 1], 3)[:, None], np.tile([-1, 0, 1], 3)[:, None])
    k2 = (((wi + dw) * 4096 + hi + dh) << 22) + ai  # (9, m): the 9 box sizes at once
    hits = np.searchsorted(srt, k2 + tol, side="right") - np.searchsorted(
        srt, k2 - tol, side="left"
    )
    twins = hits.sum(axis=0).astype(np.float64) - 1.0
    twins[~big] = 0.0

    border, ofill, elong, angle = _shape_moments(idx, lab_f, fg.shape[1], st, sw_mean)
    # Parallel repeats: elongated components with about the same direction (15 degree bins)
    # in the same or a neighbouring coarse cell (hatching, barcodes, rules of a pattern).
    pcell = max(8.0, 2.0 * med_h)
    pcx = ((x + w / 2) // pcell).astype(np.int64)
    pcy = ((y + h / 2) // pcell).astype(np.int64)
    abin = np.round(angle / (np.pi / 12)).astype(np.int64) % 12
    lined = big & (elong >= math.log(3.0))
    pkey = np.where(lined, ((pcy + 2) * 100000 + pcx + 2) * 16 + abin, -(1 << 40) - np.arange(m))
    offs = [
        (dy * 100000 + dx) * 16 + da for dy in (-1, 0, 1) for dx in (-1, 0, 1) for da in (-1, 0, 1)
    ]
    parallel = np.where(lined, _near_counts(pkey, offs), 0.0)

    f = np.empty((m, len(FEATURE_NAMES)), dtype=np.float64)
    f[:, 32] = np.log1p(twins)
    f[:, 33] = gmean(np.log1p(twins))
    f[:, 34] = border
    f[:, 35] = ofill
    f[:, 36] = elong
    f[:, 37] = np.log1p(parallel)
    f[:, 38] = gmean(border)
    f[:, 28] = st_v
    f[:, 29] = st_h
    f[:, 30] = gmean(st_v)
    f[:, 31] = gmean(st_h)
    f[:, 18] = np.log1p(gsize)
    f[:, 19] = b_sd / med
    f[:, 20] = lh_sd
    f[:, 21] = np.abs(slope)
    f[:, 22] = sw_sd / np.maximum(sw_m, 0.5)
    f[:, 23] = d_sd / 255.0
    f[:, 24] = sb_m
    f[:, 25] = lh_m - math.log(med)
    f[:, 26] = (bottom - b_m) / med
    f[:, 27] = lh - lh_m
    f[:, 0] = np.log(a_safe)
    f[:, 1] = np.log(w)
    f[:, 2] = np.log(h)
    f[:, 3] = area / np.maximum(w * h, 1.0)
    f[:, 4] = np.log(w / h)
    f[:, 5] = sw_mean
    f[:, 6] = sw_cv
    f[:, 7] = np.log(h / max(med_h, 1.0))
    f[:, 8] = np.log(np.maximum(sw_mean, 0.5) / max(med_sw, 0.5))
    f[:, 9] = np.log1p(same_bottom)
    f[:, 10] = np.log1p(same_top)
    f[:, 11] = np.log1p(same_bh)
    f[:, 12] = g_mean / 255.0
    f[:, 13] = g_std / 255.0
    f[:, 14] = (g_mean - med_dark) / 255.0
    f[:, 15] = np.log1p(neighbours)
    f[:, 16] = np.log(np.maximum(sw_mean, 0.5) / h)
    f[:, 17] = e_cnt / a_safe
    # Context cells: ~2 median glyph heights.
    ccell = 4 * cell
    cgr, cgc = -(-fg.shape[0] // ccell), -(-fg.shape[1] // ccell)
    lay = Layout(
        gid=gid,
        cy=np.minimum(((y + h / 2) // ccell).astype(np.int64), cgr - 1),
        cx=np.minimum(((x + w / 2) // ccell).astype(np.int64), cgc - 1),
        shape=(cgr, cgc),
        area=area,
    )
    return f.astype(np.float32), lay


def _shape_moments(
    idx: NDArray[np.int64],
    lab_f: NDArray[np.int32],
    cols: int,
    st: NDArray[np.float64],
    sw_mean: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Per-component shape measures from the ink pixels (flat indices ``idx``, labels
    ``lab_f``) and the stats ``st`` (x, y, w, h, area of components 1..n-1).

    Returns
    -------
    border : fraction of ink within about one stroke width of the bounding box's edge
        (1 for an empty box or a frame, about 0.5 for an "O", low for most letters);
    oriented_fill : area / area of the oriented box of the second moments (a straight bar
        of any direction ~1, curved or crossing strokes less), clipped to [0, 2];
    log_elongation : 0.5 * log of the ratio of the moments' eigenvalues;
    angle : direction of the major axis, radians in [0, pi).
    """
    m = st.shape[0]
    n = m + 1
    r, c = np.divmod(idx, cols)
    x0, y0, w, h, area = (st[:, k] for k in range(5))
    lab0 = lab_f - 1
    # position in the component's box (integers, exact in float64)
    rr, cc = r - y0[lab0], c - x0[lab0]
    edge = np.minimum(np.minimum(rr, h[lab0] - 1 - rr), np.minimum(cc, w[lab0] - 1 - cc))
    near = edge <= (2.0 * sw_mean + 1.0)[lab0]
    a_safe = np.maximum(area, 1.0)
    border = np.bincount(lab_f[near], minlength=n)[1:] / a_safe
    # Central second moments, relative to the box corner to keep the sums small.
    mr = np.bincount(lab_f, weights=rr, minlength=n)[1:] / a_safe
    mc = np.bincount(lab_f, weights=cc, minlength=n)[1:] / a_safe
    vr = np.bincount(lab_f, weights=rr * rr, minlength=n)[1:] / a_safe - mr**2 + 1.0 / 12
    vc = np.bincount(lab_f, weights=cc * cc, minlength=n)[1:] / a_safe - mc**2 + 1.0 / 12
    crc = np.bincount(lab_f, weights=rr * cc, minlength=n)[1:] / a_safe - mr * mc
    half_tr = (vr + vc) / 2.0
    disc = np.sqrt(np.maximum(((vr - vc) / 2.0) ** 2 + crc**2, 0.0))
    l1 = half_tr + disc
    l2 = np.maximum(half_tr - disc, 1.0 / 12)
    ofill = np.clip(area / (12.0 * np.sqrt(l1 * l2)), 0.0, 2.0)
    elong = 0.5 * np.log(l1 / l2)
    angle = np.mod(0.5 * np.arctan2(2.0 * crc, vc - vr), np.pi)
    return border, ofill, elong, angle


CONTEXT_NAMES = ("p", "group_p", "near_p", "wide_p")


def context_features(p: NDArray[np.float32], layout: Layout) -> NDArray[np.float32]:
    """Stage-2 context: a component's stage-1 probability and the area-weighted mean
    probability of its text group, its neighbourhood (5x5 cells of ~2 glyph heights) and
    a wide neighbourhood (15x15 cells).  Handwriting comes in words and filled fields,
    print in lines and blocks, so neighbours' votes correct isolated mistakes.

    Returns
    -------
    (m, len(CONTEXT_NAMES)) float32.
    """
    m = p.shape[0]
    if m == 0:
        return np.zeros((0, len(CONTEXT_NAMES)), np.float32)
    a = np.sqrt(np.maximum(layout.area, 1.0))
    ng = int(layout.gid.max()) + 1
    gp = np.bincount(layout.gid, weights=a * p, minlength=ng) / np.maximum(
        np.bincount(layout.gid, weights=a, minlength=ng), 1e-9
    )
    sums = np.zeros(layout.shape, np.float32)
    wts = np.zeros(layout.shape, np.float32)
    np.add.at(sums, (layout.cy, layout.cx), (a * p).astype(np.float32))
    np.add.at(wts, (layout.cy, layout.cx), a.astype(np.float32))
    out = np.empty((m, len(CONTEXT_NAMES)), np.float32)
    out[:, 0] = p
    out[:, 1] = gp[layout.gid]
    for j, k in ((2, 5), (3, 15)):
        s_ = cv2.boxFilter(sums, -1, (k, k), normalize=False, borderType=cv2.BORDER_CONSTANT)
        w_ = cv2.boxFilter(wts, -1, (k, k), normalize=False, borderType=cv2.BORDER_CONSTANT)
        out[:, j] = s_[layout.cy, layout.cx] / np.maximum(w_[layout.cy, layout.cx], 1e-6)
    return out


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Mlp:
    """A standardise -> ReLU MLP -> sigmoid scorer stored as plain arrays."""

    mean: NDArray[np.float32]
    scale: NDArray[np.float32]
    weights: tuple[NDArray[np.float32], ...]
    biases: tuple[NDArray[np.float32], ...]

    def __call__(self, features: NDArray[np.float32]) -> NDArray[np.float32]:
        if features.ndim != 2 or features.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"features must be (n, {self.mean.shape[0]}), got shape {features.shape}"
            )
        # Standardised features are clipped: heavy tails (specks, huge frames) otherwise
        # dominate the first layer.
        a = np.clip((features.astype(np.float32) - self.mean) / self.scale, -CLIP, CLIP)
        for i, (wt, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            a = a @ wt + b
            if i < len(self.weights) - 1:
                np.maximum(a, 0, out=a)
        z = np.clip(a[:, 0], -30, 30)
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {
            f"{prefix}mean": self.mean,
            f"{prefix}scale": self.scale,
            f"{prefix}n_layers": np.array(len(self.weights)),
        }
        for i, (wt, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out[f"{prefix}w{i}"] = wt
            out[f"{prefix}b{i}"] = b
        return out

    @classmethod
    def from_arrays(cls, z: dict | np.lib.npyio.NpzFile, prefix: str) -> Mlp:
        n = int(z[f"{prefix}n_layers"])
        return cls(
            mean=np.asarray(z[f"{prefix}mean"], np.float32),
            scale=np.asarray(z[f"{prefix}scale"], np.float32),
            weights=tuple(np.asarray(z[f"{prefix}w{i}"], np.float32) for i in range(n)),
            biases=tuple(np.asarray(z[f"{prefix}b{i}"], np.float32) for i in range(n)),
        )


@dataclass(frozen=True)
class Separator:
    """A fitted print/handwriting component classifier.

    ``stage1`` scores components from their own features; the optional ``stage2`` rescores
    them from the same features plus their neighbours' stage-1 scores
    (:func:`context_features`, stacked generalisation, Wolpert 1992).  A component is
    handwriting when the final probability is at least ``threshold``.
    """

    stage1: Mlp
    stage2: Mlp | None = None
    threshold: float = 0.5

    def predict_proba(
        self, features: NDArray[np.float32], layout: Layout | None = None
    ) -> NDArray[np.float32]:
        """Probability of handwriting, shape (n,), for features of shape (n, k)."""
        p = self.stage1(features)
        if self.stage2 is None or layout is None:
            return p
        return self.stage2(np.hstack([features, context_features(p, layout)]))

    def save(self, path: str | os.PathLike[str], *, meta: dict | None = None) -> None:
        """Write the model atomically as a plain-array npz (no pickle)."""
        arrays: dict[str, np.ndarray] = {
            "threshold": np.array(self.threshold, np.float32),
            "feature_names": np.array(FEATURE_NAMES),
            "context_names": np.array(CONTEXT_NAMES),
            **self.stage1.arrays("s1_"),
        }
        if self.stage2 is not None:
            arrays.update(self.stage2.arrays("s2_"))
        h = hashlib.sha256()
        for k in sorted(arrays):
            h.update(k.encode())
            h.update(np.ascontiguousarray(arrays[k]).tobytes())
        info = {
            "format_version": FORMAT_VERSION,
            "numpy": np.__version__,
            "opencv": cv2.__version__,
            "sha256": h.hexdigest(),
            **(meta or {}),
        }
        arrays["meta"] = np.array(json.dumps(info, sort_keys=True))
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
        os.close(fd)
        try:
            np.savez_compressed(tmp, **arrays)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Separator:
        """Read a model written by :meth:`save`; ValueError on a wrong format."""
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"separator model {path} has format {meta.get('format_version')}")
            if (
                tuple(str(s) for s in z["feature_names"]) != FEATURE_NAMES
                or tuple(str(s) for s in z["context_names"]) != CONTEXT_NAMES
            ):
                raise ValueError(f"separator model {path} was fitted on other features")
            return cls(
                stage1=Mlp.from_arrays(z, "s1_"),
                stage2=Mlp.from_arrays(z, "s2_") if "s2_n_layers" in z.files else None,
                threshold=float(z["threshold"]),
            )


@lru_cache(maxsize=1)
def default_separator() -> Separator | None:
    """The shipped model, or None when it has not been trained."""
    if not MODEL_PATH.exists():
        return None
    try:
        return Separator.load(MODEL_PATH)
    except (ValueError, KeyError, OSError) as exc:
        # A stale model must not take the pipeline down; the rules still work.
        warnings.warn(f"ignoring separator model {MODEL_PATH}: {exc}", RuntimeWarning, stacklevel=2)
        return None


def _rule_based(f: NDArray[np.float32]) -> NDArray[np.bool_]:
    # Without a model: drop specks and big sparse frames, keep everything else.
    area = np.exp(f[:, 0])
    w, h = np.exp(f[:, 1]), np.exp(f[:, 2])
    keep = area >= 4
    keep &= ~((f[:, 3] < 0.05) & (np.maximum(w, h) > 100))
    return keep


def components(
    flat: NDArray[np.uint8], ink: NDArray[np.bool_]
) -> tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.float32], Layout]:
    """Line removal, then connected components, their features and layout.

    Returns
    -------
    (labels, stats, features, layout): labels (rows, cols) int32; stats (n, 5); features
    (n - 1, k) float32; :class:`Layout`.
    """
    return _components(flat, ink)[:4]


def _components(
    flat: NDArray[np.uint8], ink: NDArray[np.bool_]
) -> tuple[
    NDArray[np.int32], NDArray[np.int32], NDArray[np.float32], Layout, list[NDArray[np.int64]]
]:
    """:func:`components` plus the labelled pixels (flat indices, labels; empty without
    components)."""
    kept, _ = remove_lines(ink)
    _, labels, stats = inkviews.components(kept.view(np.uint8))
    pixels: list[NDArray[np.int64]] = []
    feats, layout = _component_table(flat, labels, stats, ink_pixels=pixels)
    return labels, stats, feats, layout, pixels


def separate(
    flat: NDArray[np.uint8],
    ink: NDArray[np.bool_],
    *,
    model: Separator | None | bool = True,
    plain: bool = False,
) -> NDArray[np.bool_]:
    """Handwriting ink of a flattened slip.

    Parameters
    ----------
    flat : (rows, cols) uint8
        Background-flattened greyscale (paper ~255).
    ink : (rows, cols) bool
        Binarised ink of ``flat``.
    model : Separator, True or None/False
        The classifier; True = the shipped model (rules if none is shipped); None/False =
        rules only.
    plain : bool
        A plain crop of handwriting (no printed form): ruled lines are still removed, every
        other component is kept (no classifier).

    Returns
    -------
    (rows, cols) bool, True = handwriting.
    """
    if ink.shape != flat.shape:
        raise ValueError(f"ink shape {ink.shape} must match flat shape {flat.shape}")
    if not ink.any():
        return np.zeros(ink.shape, dtype=bool)
    _, _, feats, layout, pixels = _components(flat, ink)
    if feats.shape[0] == 0:
        return np.zeros(ink.shape, dtype=bool)
    if model is True:
        model = default_separator()
    if plain:
        keep = np.exp(feats[:, 0]) >= 3  # single-pixel specks are noise either way
    elif isinstance(model, Separator):
        keep = model.predict_proba(feats, layout) >= model.threshold
        keep &= np.exp(feats[:, 0]) >= 3  # single-pixel specks are noise either way
    else:
        keep = _rule_based(feats)
    # paint the kept components' pixels (a lookup over the whole label image costs 5x more)
    idx, lab = pixels
    hand = np.zeros(ink.shape, dtype=bool)
    hand.ravel()[idx[keep[lab - 1]]] = True
    return hand


# --------------------------------------------------------------------------- training


def pixel_scores(
    pred: NDArray[np.bool_],
    hand: NDArray[np.bool_],
    printed: NDArray[np.bool_],
    *,
    tolerance: int = 1,
) -> dict[str, float]:
    """Pixel precision/recall of a handwriting mask against ground truth.

    Ground-truth masks are drawn from the stroke centre-lines' coverage while the scan is
    blurred, so predicted stroke rims one pixel outside the mask are not errors: precision
    counts a predicted pixel as correct within ``tolerance`` px of handwriting, recall counts
    a handwriting pixel as found within ``tolerance`` px of a prediction (as in document
    binarisation benchmarks).

    Parameters
    ----------
    pred, hand, printed : (rows, cols) bool
        Predicted handwriting, true handwriting, true printed ink.

    Returns
    -------
    dict with ``precision``, ``recall``, ``print_kept`` (fraction of print-only pixels
    predicted as handwriting), and the counts ``tp``, ``pred``, ``hand``, ``print``.
    """
    k = np.ones((2 * tolerance + 1, 2 * tolerance + 1), np.uint8)
    hand_d = cv2.dilate(hand.astype(np.uint8), k) > 0
    pred_d = cv2.dilate(pred.astype(np.uint8), k) > 0
    print_only = printed & ~hand_d
    n_pred = int(pred.sum())
    n_hand = int(hand.sum())
    tp_p = int((pred & hand_d).sum())
    tp_r = int((hand & pred_d).sum())
    n_print = int(print_only.sum())
    return {
        "precision": tp_p / n_pred if n_pred else float("nan"),
        "recall": tp_r / n_hand if n_hand else float("nan"),
        "print_kept": int((pred & print_only).sum()) / n_print if n_print else float("nan"),
        "tp": float(tp_p),
        "pred": float(n_pred),
        "hand": float(n_hand),
        "print": float(n_print),
    }


def paste_crops(
    page: NDArray[np.uint8],
    hand_mask: NDArray[np.uint8],
    print_mask: NDArray[np.uint8],
    crops: list[NDArray[np.uint8]],
    rng: np.random.Generator,
) -> tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.uint8]]:
    """A slip with real handwriting crops written on it, and its masks (255 = ink).

    Each crop goes at a random place; only its ink is transferred (the crop flattened to
    paper = 1 and multiplied in: darker ink wins, as ink on ink does).  The crops' ink joins
    the handwriting mask and leaves the print mask.  Crops that do not fit are skipped.
    """
    from cv.preprocess import binarise, flatten_background

    out = page.copy()
    hand = hand_mask > 0
    for crop in crops:
        cr, cc = crop.shape
        if cr >= out.shape[0] or cc >= out.shape[1]:
            continue
        r0 = int(rng.integers(0, out.shape[0] - cr))
        c0 = int(rng.integers(0, out.shape[1] - cc))
        flat = flatten_background(crop)
        region = out[r0 : r0 + cr, c0 : c0 + cc].astype(np.float32)
        out[r0 : r0 + cr, c0 : c0 + cc] = (region * (flat.astype(np.float32) / 255.0)).astype(
            np.uint8
        )
        hand[r0 : r0 + cr, c0 : c0 + cc] |= binarise(flat)
    printed = (print_mask > 0) & ~hand
    return out, hand.astype(np.uint8) * 255, printed.astype(np.uint8) * 255


def collect_pasted(
    folder: Path,
    unipen_dir: Path,
    *,
    per_slip: int = 2,
    scale: tuple[float, float] = PASTED_SCALE,
    seed: int = 0,
    work_pixels: int = 0,
) -> tuple[list[tuple[NDArray[np.float32], NDArray[np.int8], Layout]], list[str]]:
    """Labelled components of a generated set's slips with crops of the *fit* UNIPEN
    writers pasted on (:func:`paste_crops`), each resized by a factor drawn from ``scale``:
    real handwriting on printed forms, which neither the generated slips nor the plain
    crops show the classifier."""
    import csv

    from sample_slips.splits import unipen_split

    with (Path(unipen_dir) / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    fit_writers, _ = unipen_split({r["writer"] for r in rows})
    crop_rows = [r for r in rows if r["writer"] in fit_writers]
    rng = np.random.default_rng(seed)
    out, writers = [], []
    for img_p, hm_p, pm_p in _read_set(Path(folder)):
        picked = [crop_rows[int(i)] for i in rng.choice(len(crop_rows), per_slip, replace=False)]
        crops = []
        for r in picked:
            crop = cv2.imread(str(Path(unipen_dir) / "images" / r["image"]), cv2.IMREAD_GRAYSCALE)
            f = float(rng.uniform(*scale))
            crops.append(cv2.resize(crop, None, fx=f, fy=f, interpolation=cv2.INTER_AREA))
        page, hm, pm = paste_crops(
            cv2.imread(str(img_p), cv2.IMREAD_GRAYSCALE),
            cv2.imread(str(hm_p), cv2.IMREAD_GRAYSCALE),
            cv2.imread(str(pm_p), cv2.IMREAD_GRAYSCALE),
            crops,
            rng,
        )
        out.append(labelled_components(page, hm, pm, work_pixels=work_pixels))
        writers.append("pasted:" + "+".join(r["writer"] for r in picked))
    return out, writers


def write_real_fit_set(folder: Path, unipen_dir: Path, *, slips: int, seed: int) -> Path:
    """Write :data:`REAL_SET`'s slips into ``folder`` (a generated set's layout): each holds
    1-3 crops of one *fit* UNIPEN writer (`sample_slips.splits.unipen_split`)."""
    import csv

    from sample_slips.real_hands import write_real_set
    from sample_slips.splits import templates_for, unipen_split

    with (Path(unipen_dir) / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    fit_writers, _ = unipen_split({r["writer"] for r in rows})
    by_writer: dict[str, list[dict]] = {}
    for r in rows:
        if r["writer"] in fit_writers:
            by_writer.setdefault(r["writer"], []).append(r)
    writers = sorted(by_writer)
    rng = np.random.default_rng(seed)
    chosen = []
    for _ in range(slips):
        crops = by_writer[writers[int(rng.integers(len(writers)))]]
        k = min(int(rng.integers(1, 4)), len(crops))
        chosen.append([crops[int(j)] for j in rng.choice(len(crops), size=k, replace=False)])
    write_real_set(
        chosen,
        Path(folder),
        designs=templates_for("fit"),
        random_designs=0.7,
        scale=(0.3, 0.6),
        seed=seed,
        unipen_dir=Path(unipen_dir),
    )
    return Path(folder)


def labelled_components(
    image: NDArray[np.uint8],
    hand_mask: NDArray[np.uint8],
    print_mask: NDArray[np.uint8],
    *,
    templates: list | None = None,
    work_pixels: int = 0,
) -> tuple[NDArray[np.float32], NDArray[np.int8], Layout]:
    """Features, labels and layout of a slip's components, computed exactly as at
    inference time; a component is handwriting when most of its ink lies on the
    handwriting mask rather than the print mask.

    Parameters
    ----------
    image : (rows, cols) uint8
    hand_mask, print_mask : (rows, cols) uint8, 255 = ink
    templates : optional blank designs (see :func:`cv.preprocess.handwriting_mask`)

    Returns
    -------
    (features (n, k) float32, labels (n,) int8 with 1 = handwriting, layout)
    """
    from cv.preprocess import work_frame

    wf = work_frame(image, templates=templates, work_pixels=work_pixels)
    labels, stats, feats, layout = components(wf.flat, wf.candidates)
    n = stats.shape[0]
    hm = wf.map_input(hand_mask).astype(np.float64)
    pm = wf.map_input(print_mask).astype(np.float64)
    fg = labels > 0
    lab = labels[fg]
    hs = np.bincount(lab, weights=hm[fg], minlength=n)[1:]
    ps = np.bincount(lab, weights=pm[fg], minlength=n)[1:]
    y = (hs > ps).astype(np.int8)
    return feats, y, layout


def _fit_mlp(
    x: NDArray[np.float32],
    y: NDArray[np.int8],
    weights: NDArray[np.float64],
    *,
    hidden: tuple[int, ...],
    max_iter: int,
    random_state: int,
) -> Mlp:
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(random_state)
    n = x.shape[0]
    # scikit-learn's MLP has no sample weights: resample in proportion to the weight.
    idx = rng.choice(n, size=min(n, 100_000), replace=True, p=weights / weights.sum())
    xs = x[idx].astype(np.float64)
    ys = y[idx]
    mean = xs.mean(axis=0)
    scale = xs.std(axis=0) + 1e-6
    clf = MLPClassifier(
        hidden_layer_sizes=hidden,
        alpha=1e-4,
        batch_size=1024,
        learning_rate_init=3e-3,
        max_iter=max_iter,
        early_stopping=True,
        random_state=random_state,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: early stopping decides
        clf.fit(np.clip((xs - mean) / scale, -CLIP, CLIP), ys)
    return Mlp(
        mean=mean.astype(np.float32),
        scale=scale.astype(np.float32),
        weights=tuple(c.astype(np.float32) for c in clf.coefs_),
        biases=tuple(b.astype(np.float32) for b in clf.intercepts_),
    )


def fit(
    slips: list[tuple[NDArray[np.float32], NDArray[np.int8], Layout]],
    *,
    groups: list[str] | None = None,
    hidden: tuple[int, ...] = (64, 32),
    max_iter: int = 60,
    context: bool = True,
    random_state: int = 0,
) -> Separator:
    """Fit the two-stage separator on labelled slips (scikit-learn MLPs, exported to arrays).

    Components are weighted by sqrt(area): pixel accuracy is what matters, but a few huge
    print components must not swamp the many small glyphs.  Stage 2 is fitted on
    out-of-fold stage-1 scores (two folds split by ``groups``, e.g. writer), so it learns
    how far to trust stage 1 on unseen slips.

    Parameters
    ----------
    slips : list of (features, labels, layout) per slip, from :func:`labelled_components`
    groups : list of str, optional
        Fold key per slip (slips of one writer stay in one fold); default the slip index.
    """
    x = np.concatenate([s[0] for s in slips])
    y = np.concatenate([s[1] for s in slips])
    w = np.sqrt(np.maximum(np.concatenate([s[2].area for s in slips]), 1.0))
    kw = {"hidden": hidden, "max_iter": max_iter, "random_state": random_state}
    stage1 = _fit_mlp(x, y, w, **kw)
    if not context:
        return Separator(stage1=stage1)
    keys = groups if groups is not None else [str(i) for i in range(len(slips))]
    fold = np.array(
        [int(hashlib.sha256(k.encode()).hexdigest(), 16) % 2 for k in keys], dtype=np.int64
    )
    sizes = np.array([s[0].shape[0] for s in slips])
    comp_fold = np.repeat(fold, sizes)
    oof = np.zeros(x.shape[0], np.float32)
    for k in (0, 1):
        part = _fit_mlp(x[comp_fold != k], y[comp_fold != k], w[comp_fold != k], **kw)
        oof[comp_fold == k] = part(x[comp_fold == k])
    starts = np.concatenate([[0], np.cumsum(sizes)])
    ctx = np.concatenate(
        [context_features(oof[starts[i] : starts[i + 1]], slips[i][2]) for i in range(len(slips))]
    )
    stage2 = _fit_mlp(np.hstack([x, ctx]), y, w, **kw)
    return Separator(stage1=stage1, stage2=stage2)


def _read_set(folder: Path) -> list[tuple[Path, Path, Path]]:
    import csv

    with (folder / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for r in rows:
        stem = Path(r["image"]).stem
        out.append(
            (
                folder / r["image"],
                folder / "masks" / f"{stem}.png",
                folder / "masks" / f"{stem}_print.png",
            )
        )
    return out


def collect(
    folder: Path, *, work_pixels: int = 0, templates: list | None = None
) -> tuple[list[tuple[NDArray[np.float32], NDArray[np.int8], Layout]], list[str]]:
    """Labelled components of every slip of a generated set, and each slip's writer."""
    import csv

    with (Path(folder) / "labels.csv").open() as fh:
        writers = [r["writer"] for r in csv.DictReader(fh)]
    out = []
    for img_p, hm_p, pm_p in _read_set(Path(folder)):
        img = cv2.imread(str(img_p), cv2.IMREAD_GRAYSCALE)
        hm = cv2.imread(str(hm_p), cv2.IMREAD_GRAYSCALE)
        pm = cv2.imread(str(pm_p), cv2.IMREAD_GRAYSCALE)
        out.append(labelled_components(img, hm, pm, templates=templates, work_pixels=work_pixels))
    return out, writers


def collect_crops(
    unipen_dir: Path, *, limit: int = 200, work_pixels: int = 0
) -> tuple[list[tuple[NDArray[np.float32], NDArray[np.int8], Layout]], list[str]]:
    """Components of real handwriting crops (no form) of the *fit* UNIPEN writers
    (:func:`sample_slips.splits.unipen_split`), all labelled handwriting, so plain crops
    pass through the separator intact."""
    import csv

    from cv.preprocess import work_frame
    from sample_slips.splits import unipen_split

    with (Path(unipen_dir) / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    fit_writers, _ = unipen_split({r["writer"] for r in rows})
    out, writers = [], []
    for r in [r for r in rows if r["writer"] in fit_writers][:limit]:
        img = cv2.imread(str(Path(unipen_dir) / "images" / r["image"]), cv2.IMREAD_GRAYSCALE)
        wf = work_frame(img, work_pixels=work_pixels)
        _, _, feats, layout = components(wf.flat, wf.candidates)
        out.append((feats, np.ones(feats.shape[0], np.int8), layout))
        writers.append("unipen:" + r["writer"])
    return out, writers


# Generated fit sets of the shipped model: (writers, seed, fraction of slips on randomised
# designs). The first keeps the four fit designs' real proportions; the second puts most
# slips on procedurally randomised layouts so the classifier learns what print looks like,
# not where the four fit designs put it (precision on never-seen designs 0.63 -> 0.9+).
# The last three (session 19) add writers: trained on 720 slips the classifier took neat
# held-out hands for print (pixel recall 0.870 on 180 held-out slips, under 0.7 on 15 % of
# them); on these 3,420 and PASTED_SET 0.893, precision 0.953 -> 0.962 (bench/ACCURACY.md).
TRAIN_SETS: tuple[tuple[int, int, float], ...] = (
    (60, 11, 0.0),
    (80, 21, 0.7),
    (300, 51, 0.7),
    (200, 52, 0.0),
    (400, 53, 0.7),
)


def train(
    *,
    out: Path = MODEL_PATH,
    sets: tuple[tuple[int, int, float], ...] | list[tuple[int, int, float]] = TRAIN_SETS,
    slips_per_writer: int = 3,
    data_dir: Path | list[Path] | None = None,
    unipen_dir: Path | None = None,
    unipen_crops: int = 300,
    pasted_set: tuple[int, int, float] | None = PASTED_SET,
    real_set: tuple[int, int] | None = None,
    random_state: int = 0,
    jobs: int = 1,
) -> dict:
    """Generate fit sets (or read ``data_dir``), fit the separator, save it to ``out``.

    Only ``split="fit"`` slips (fit fonts, fit and randomised designs) are used, plus,
    when ``unipen_dir`` is given, plain crops of the fit UNIPEN writers and, with
    ``pasted_set``, one more generated fit set with their crops pasted on
    (:func:`collect_pasted`) and, with ``real_set``, slips written with their crops only
    (:func:`write_real_fit_set`).

    Parameters
    ----------
    sets : (writers, seed, random_designs) per generated set, see :data:`TRAIN_SETS`
        and ``sample_slips.generate.generate``; ignored when ``data_dir`` is given.
    """
    from sample_slips.generate import generate

    dirs = [data_dir] if isinstance(data_dir, str | Path) else list(data_dir or [])
    with tempfile.TemporaryDirectory() as tmp:

        def generated(name: str, n_writers: int, seed: int, random_designs: float) -> Path:
            folder = Path(tmp) / name
            generate(
                folder,
                writers=n_writers,
                slips_per_writer=slips_per_writer,
                seed=seed,
                split="fit",
                masks=True,
                jobs=jobs,
                random_designs=random_designs,
            )
            return folder

        if not dirs:
            dirs = [generated(f"fit{k}", *spec) for k, spec in enumerate(sets)]
        # generated before any collecting: forking worker processes after OpenCV has
        # started its threads can hang them
        pasted = None
        if unipen_dir is not None and pasted_set is not None:
            pasted = generated("pasted", *pasted_set)
        real = None
        if unipen_dir is not None and real_set is not None:
            real = write_real_fit_set(
                Path(tmp) / "real", unipen_dir, slips=real_set[0], seed=real_set[1]
            )
        slips, slip_writers = [], []
        for d in dirs:
            more, more_writers = collect(Path(d))
            slips, slip_writers = slips + more, slip_writers + more_writers
        if pasted is not None:
            more, more_writers = collect_pasted(pasted, unipen_dir, seed=random_state)
            slips, slip_writers = slips + more, slip_writers + more_writers
        if real is not None:
            more, more_writers = collect(real)
            slips, slip_writers = slips + more, slip_writers + ["real:" + w for w in more_writers]
    if unipen_dir is not None and unipen_crops > 0:
        crops, crop_writers = collect_crops(unipen_dir, limit=unipen_crops)
        slips, slip_writers = slips + crops, slip_writers + crop_writers
    model = fit(slips, groups=slip_writers, random_state=random_state)
    x = np.concatenate([s_[0] for s_ in slips])
    y = np.concatenate([s_[1] for s_ in slips])
    w = np.concatenate([s_[2].area for s_ in slips])
    pred = np.concatenate([model.predict_proba(s_[0], s_[2]) for s_ in slips]) >= 0.5
    acc = float(np.average(pred == (y == 1), weights=w))
    meta = {
        "sets": [list(t) for t in sets] if not data_dir else [str(d) for d in dirs],
        "slips_per_writer": slips_per_writer,
        "random_state": random_state,
        "slips": len(slips),
        "components": int(x.shape[0]),
        "unipen_crops": int(sum(k.startswith("unipen:") for k in slip_writers)),
        "pasted_set": None if unipen_dir is None or pasted_set is None else list(pasted_set),
        "real_set": None if unipen_dir is None or real_set is None else list(real_set),
        "handwriting_fraction": float(np.average(y, weights=w)),
        "fit_pixel_accuracy": acc,
    }
    model.save(out, meta=meta)
    default_separator.cache_clear()
    return {"out": str(out), **meta}


def _parse_set(text: str) -> tuple[int, int, float]:
    try:
        n, seed, frac = text.split(":")
        return int(n), int(seed), float(frac)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected WRITERS:SEED:RANDOM_DESIGNS, got {text!r}"
        ) from exc


def _main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cv.separate", description=__doc__)
    p.add_argument("--train", action="store_true", help="fit the separator on generated slips")
    p.add_argument(
        "--set",
        dest="sets",
        type=_parse_set,
        action="append",
        default=None,
        help="a generated fit set WRITERS:SEED:RANDOM_DESIGNS (repeatable); default "
        + " ".join(":".join(str(v) for v in t) for t in TRAIN_SETS),
    )
    p.add_argument("--slips-per-writer", type=int, default=3)
    p.add_argument("--random-state", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1, help="processes generating slips")
    p.add_argument("--out", type=Path, default=MODEL_PATH)
    p.add_argument(
        "--data-dir",
        type=Path,
        action="append",
        default=None,
        help="an existing generated fit set (repeatable); default: generate the --set sets",
    )
    p.add_argument(
        "--unipen-dir",
        type=Path,
        default=UNIPEN_DIR if UNIPEN_DIR.exists() else None,
        help="real crops; only the fit writers of sample_slips.splits.unipen_split are used",
    )
    p.add_argument("--unipen-crops", type=int, default=300)
    p.add_argument(
        "--no-pasted",
        action="store_true",
        help="leave out the generated set with UNIPEN crops pasted on (PASTED_SET)",
    )
    p.add_argument(
        "--real",
        action="store_true",
        help="add slips written with UNIPEN crops only (REAL_SET; not in the shipped file)",
    )
    args = p.parse_args(argv)
    if not args.train:
        p.print_help()
        return 2
    report = train(
        out=args.out,
        sets=args.sets or TRAIN_SETS,
        slips_per_writer=args.slips_per_writer,
        random_state=args.random_state,
        jobs=args.jobs,
        data_dir=args.data_dir,
        unipen_dir=args.unipen_dir,
        unipen_crops=args.unipen_crops,
        pasted_set=None if args.no_pasted else PASTED_SET,
        real_set=REAL_SET if args.real else None,
    )
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
