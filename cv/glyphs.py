"""Letter shapes compared between two slips: the evidence a reviewer can see.

A writer forms each letter the same way from slip to slip (their allographs), and different
writers form the same letter differently; forensic examiners compare exactly that.  This
module cuts a slip's handwriting (:func:`cv.preprocess.handwriting_mask`) into glyphs (its
connected ink components, on capitals and digits mostly one letter each), describes each
glyph's shape by a histogram of oriented gradients of the glyph resized to a square (HOG,
Dalal & Triggs 2005; square-root normalised as RootSIFT, Arandjelovic & Zisserman 2012), and
pairs the glyphs of two slips that are each other's best match.  Matching glyphs one to one
without knowing the letters is text-independent allograph matching in the spirit of Bulacu
& Schomaker's grapheme features (2007), kept as pairs so a person can judge them.

It does not feed the embedding or the clustering: the score here is a second opinion shown
beside the embedding's similarity.  On held-out real capitals and digits (UNIPEN) letter
matching alone ranks the writer first for 0.81 of queries, the embedding's ranking 0.75; on
generated slips, where writers of one handwriting font share every letter shape, 0.68
against 0.90 (``bench/glyphs.py``, bench/ACCURACY.md).

Pure functions on arrays; boxes are ``(row0, col0, row1, col1)``, end-exclusive, in the
input image's pixels.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "GLYPH_SIZE",
    "GlyphMatch",
    "Glyphs",
    "compare_glyphs",
    "different_writer_share",
    "glyph_set",
    "glyphs_of_mask",
    "load_reference",
]

# Each glyph is padded to a square and resized to this side before its HOG is taken: letter
# shape, not size, is compared (sizes differ with the scan's dpi and the box written in).
GLYPH_SIZE = 32
_CELL = 4  # HOG cell side (px of the 32 x 32 glyph): 8 x 8 cells
_BINS = 9  # unsigned orientations
_CELLS = (GLYPH_SIZE // _CELL) ** 2
# the cell of each glyph pixel
_CELL_OF = (np.arange(GLYPH_SIZE) // _CELL)[:, None] * (GLYPH_SIZE // _CELL) + (
    np.arange(GLYPH_SIZE) // _CELL
)[None, :]
# Components smaller than this many pixels, or shorter than this share of the median glyph
# height, are dots, commas and specks: they match everything.
MIN_GLYPH_PIXELS = 20
MIN_GLYPH_HEIGHT = 0.3
MAX_GLYPHS = 300  # the largest ones; a generated slip holds 35 (median), a line of writing 3-15
# The score averages the better half of each glyph's best match in the other slip: letters
# written on one slip only (different text) have no counterpart and would only add noise.
SCORE_SHARE = 0.5
# What a score means: different writers' scores on real handwriting (fit-split writers only),
# per bin of the smaller glyph count of the pair, as quantiles (bench/glyph_reference.py
# writes the file).  Scores rise with the letters compared: the median different-writer pair
# scores about 0.41 with 1-2 glyphs and 0.60 with 26 or more.
REFERENCE_PATH = Path(__file__).resolve().parent / "models" / "glyph_reference.json"
REFERENCE_BINS = (1, 3, 5, 8, 12, 18, 26, 10_000)
REFERENCE_QUANTILES = (0.0, *(k / 20 for k in range(1, 20)), 0.99, 1.0)
MIN_REFERENCE_PAIRS = 100  # a bin with fewer pairs says nothing


@dataclass(frozen=True)
class Glyphs:
    """One slip's glyphs: ``boxes`` (n, 4) int32 in the input frame, ``descriptors`` (n, d)
    float32 with unit rows."""

    boxes: NDArray[np.int32]
    descriptors: NDArray[np.float32]

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


@dataclass(frozen=True)
class GlyphMatch:
    """Two slips' glyphs compared: ``pairs`` are (index in a, index in b, similarity) of
    glyphs that are each other's best match, most similar first; ``score`` is the mean best
    match of the better half of both slips' glyphs (None when either slip has none)."""

    pairs: list[tuple[int, int, float]]
    score: float | None


def _hog(glyph: NDArray[np.uint8]) -> NDArray[np.float32]:
    """Root-normalised HOG of a GLYPH_SIZE square (ink = 255): gradient orientations
    (unsigned, _BINS bins, each pixel split between its two nearest) summed per _CELL cell."""
    g = glyph.astype(np.float32)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=1)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=1)
    mag = np.sqrt(gx * gx + gy * gy)
    ang = (np.arctan2(gy, gx) % np.pi) * (_BINS / np.pi)  # [0, _BINS)
    lo = np.floor(ang).astype(np.int64) % _BINS
    frac = ang - np.floor(ang)
    n_bins = _CELLS * _BINS
    hist = np.bincount((_CELL_OF * _BINS + lo).ravel(), (mag * (1 - frac)).ravel(), n_bins)
    hist += np.bincount((_CELL_OF * _BINS + (lo + 1) % _BINS).ravel(), (mag * frac).ravel(), n_bins)
    hist = np.sqrt(hist)
    norm = float(np.linalg.norm(hist))
    return (hist / norm if norm > 0 else hist).astype(np.float32)


def glyphs_of_mask(mask: NDArray[np.bool_] | NDArray[np.uint8]) -> Glyphs:
    """The glyphs of a handwriting mask (nonzero = ink): its 8-connected components above
    the speck floor, the largest :data:`MAX_GLYPHS`, in reading order of their boxes."""
    ink = (np.asarray(mask) > 0).astype(np.uint8)
    if ink.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {ink.shape}")
    n, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    stats = stats[1:]
    big = stats[:, cv2.CC_STAT_AREA] >= MIN_GLYPH_PIXELS
    if not big.any():
        return Glyphs(np.zeros((0, 4), np.int32), np.zeros((0, _CELLS * _BINS), np.float32))
    median_h = float(np.median(stats[big, cv2.CC_STAT_HEIGHT]))
    keep = np.flatnonzero(big & (stats[:, cv2.CC_STAT_HEIGHT] >= MIN_GLYPH_HEIGHT * median_h))
    keep = keep[np.argsort(-stats[keep, cv2.CC_STAT_AREA], kind="stable")][:MAX_GLYPHS]
    keep = keep[np.lexsort((stats[keep, cv2.CC_STAT_LEFT], stats[keep, cv2.CC_STAT_TOP] // 8))]
    boxes, descs = [], []
    for k in keep.tolist():
        x, y, w, h = (int(v) for v in stats[k, :4])
        comp = (labels[y : y + h, x : x + w] == k + 1).astype(np.uint8) * 255
        side = max(w, h) + 4
        square = np.zeros((side, side), np.uint8)
        oy, ox = (side - h) // 2, (side - w) // 2
        square[oy : oy + h, ox : ox + w] = comp
        small = cv2.resize(square, (GLYPH_SIZE, GLYPH_SIZE), interpolation=cv2.INTER_AREA)
        descs.append(_hog(cv2.GaussianBlur(small, (3, 3), 0)))
        boxes.append((y, x, y + h, x + w))
    return Glyphs(np.array(boxes, np.int32).reshape(-1, 4), np.array(descs, np.float32))


def glyph_set(
    image: NDArray[np.uint8], *, templates: Sequence[NDArray[np.uint8]] | None = None
) -> Glyphs:
    """The glyphs of a slip's handwriting (print, ruled lines and till stamp removed)."""
    from cv.preprocess import handwriting_mask

    return glyphs_of_mask(handwriting_mask(image, templates=templates))


def compare_glyphs(a: Glyphs, b: Glyphs, *, top: int = 12) -> GlyphMatch:
    """Pair the glyphs of two slips that are each other's best match (at most ``top``, most
    similar first) and score how well the two slips' letters match (see :class:`GlyphMatch`)."""
    if len(a) == 0 or len(b) == 0:
        return GlyphMatch([], None)
    sim = a.descriptors @ b.descriptors.T
    best_b = sim.argmax(axis=1)
    best_a = sim.argmax(axis=0)
    mutual = np.flatnonzero(best_a[best_b] == np.arange(len(a)))
    order = mutual[np.argsort(-sim[mutual, best_b[mutual]], kind="stable")][: max(0, int(top))]
    pairs = [(int(i), int(best_b[i]), round(float(sim[i, best_b[i]]), 4)) for i in order]

    def better_half(best: NDArray[np.float32]) -> float:
        k = max(1, int(np.ceil(SCORE_SHARE * best.size)))
        return float(np.sort(best)[-k:].mean())

    score = 0.5 * (better_half(sim.max(axis=1)) + better_half(sim.max(axis=0)))
    return GlyphMatch(pairs, round(score, 4))


@lru_cache(maxsize=4)
def load_reference(path: Path = REFERENCE_PATH) -> dict:
    """The different-writer reference (see :data:`REFERENCE_PATH`); {} when there is none."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}


def different_writer_share(
    score: float | None, glyphs: int, reference: dict | None = None
) -> float | None:
    """The share of different writers' pairs with as many glyphs (``glyphs``: the smaller
    count of the two slips) that score below ``score`` on real handwriting, by linear
    interpolation between the reference's quantiles; None without a score or a reference
    bin of :data:`MIN_REFERENCE_PAIRS` pairs."""
    ref = load_reference() if reference is None else reference
    if score is None or not ref:
        return None
    for b in ref["bins"]:
        lo, hi = b["glyphs"]
        if lo <= glyphs <= hi:
            if b["pairs"] < MIN_REFERENCE_PAIRS:
                return None
            return float(np.interp(score, b["quantiles"], ref["quantiles"]))
    return None
