"""Find the till stamp on a binarised slip: a barcode and the block of print beside it.

The till prints a stamp (shop, till, time, bet id, stake, then a barcode) over the slip
wherever it lands, often across the form's print or the handwriting.  Its monospaced
glyphs merged with the form's print are components the separator does not know, and it
kept about 3 % of held-out slips' "handwriting" ink from them (more than 5 % of the
handwriting on 27 of 120 slips).  The same font on every slip reads as a trait all writers
share: held-out retrieval with those pixels painted out (an oracle) rose from mAP 0.710 to
0.743 (as ranked 0.831 -> 0.868).

The barcode is the anchor: many solid bars of one height side by side, which neither
handwriting nor a form's rules make.  The stamp's text lies along the bars' top ends
within about 0.7 barcode widths (the till's lines are as long as its barcode); of the two
sides the one holding more ink is taken, so a stamp printed upside down or turned a
quarter is found too.  A stamp whose barcode fell off the page is not found.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = ["barcode_boxes", "stamp_mask"]

#: Bar height range and the shortest vertical run a bar keeps, in work-frame pixels (a
#: slip of ~0.35 MP: the till's bars are 20-35 px tall there).
MIN_BAR_HEIGHT = 14
MAX_BAR_HEIGHT = 60
#: A barcode has at least this many bars, each at most this wide, at most this far apart
#: (px): a column of check boxes has as many edges, but a box's width apart, and a box a
#: customer hatched with strokes had 8-9 (sample slip 64; held-out stamps found at 8 bars:
#: 257 of 296, at 10: 250).
MIN_BARS = 10
MAX_BAR_WIDTH = 12
MAX_BAR_GAP = 5
#: Ink share between the bars above which they are the dark gaps between light letters in
#: a band of print (a header bar), not a barcode.
MAX_GAP_INK = 0.55
#: The text block beside the barcode: depth in barcode widths, side margin likewise.
TEXT_DEPTH = 0.7
SIDE_MARGIN = 0.06


def barcode_boxes(ink: NDArray[np.bool_]) -> list[tuple[int, int, int, int]]:
    """(row0, row1, col0, col1) of every barcode with vertical bars in ``ink``."""
    img = np.ascontiguousarray(ink, dtype=np.uint8)
    # bars: pixels on vertical runs of a bar's height, not on a taller rule nor in a block
    # wider than a bar (morphology, not components: a labelling of the frame costs 2 ms)
    runs = cv2.morphologyEx(img, cv2.MORPH_OPEN, np.ones((MIN_BAR_HEIGHT, 1), np.uint8))
    rules = cv2.morphologyEx(runs, cv2.MORPH_OPEN, np.ones((MAX_BAR_HEIGHT + 1, 1), np.uint8))
    wide = cv2.morphologyEx(runs, cv2.MORPH_OPEN, np.ones((1, MAX_BAR_WIDTH + 1), np.uint8))
    bars = runs & ~rules & ~wide
    # side by side bars (gaps of a few px) close into one block, found on a 4x coarser grid
    block = cv2.morphologyEx(bars, cv2.MORPH_CLOSE, np.ones((1, MAX_BAR_GAP + 1), np.uint8))
    rows, cols = block.shape
    coarse = cv2.resize(
        cv2.dilate(block, np.ones((4, 4), np.uint8)),
        (-(-cols // 4), -(-rows // 4)),
        interpolation=cv2.INTER_NEAREST,
    )
    m, _, bstats, _ = cv2.connectedComponentsWithStats(coarse, connectivity=8)
    out = []
    for j in range(1, m):
        cx, cy, cw, ch = (4 * int(v) for v in bstats[j, :4])
        if cw < 3 * MIN_BAR_HEIGHT:
            continue
        inside = bars[max(0, cy - 4) : cy + ch + 4, max(0, cx - 4) : cx + cw + 4]
        ys, xs = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
        if not ys.size:  # preprocessing never raises on a valid image
            continue
        y, x = max(0, cy - 4) + int(ys[0]), max(0, cx - 4) + int(xs[0])
        bh, bw = int(ys[-1] - ys[0]) + 1, int(xs[-1] - xs[0]) + 1
        if bw < 3 * MIN_BAR_HEIGHT or bh > 2 * MAX_BAR_HEIGHT:
            continue
        # a bar stands alone: in a window around the block, the run components no wider
        # than a bar and no taller than one (in a band of print they all join up)
        r0, c0 = max(0, y - 8), max(0, x - 8)
        window = runs[r0 : y + bh + 8, c0 : x + bw + 8]
        _, labels, stats, _ = cv2.connectedComponentsWithStats(window, connectivity=8)
        alone = (stats[:, cv2.CC_STAT_WIDTH] <= MAX_BAR_WIDTH) & (
            stats[:, cv2.CC_STAT_HEIGHT] <= MAX_BAR_HEIGHT
        )
        alone[0] = False
        # count bars along each row of the block (each 0 -> 1 step is one bar): the block
        # may hold other print too; the barcode spans the rows with most of the most bars
        lone = alone[labels[y - r0 : y - r0 + bh, x - c0 : x - c0 + bw]].astype(np.int8)
        counts = np.count_nonzero(np.diff(lone, axis=1, prepend=0) == 1, axis=1)
        best = int(counts.max())
        if best < MIN_BARS:
            continue
        on = np.flatnonzero(counts >= 0.5 * best)
        top, bottom = y + int(on[0]), y + int(on[-1]) + 1
        row = lone[int(np.argmax(counts))].astype(bool)
        # between a barcode's bars is paper from end to end; between the "bars" of light
        # letters in a dark band of print is mostly the band
        gaps = ink[top:bottom, x : x + bw][:, ~row]
        if gaps.size and gaps.mean() < MAX_GAP_INK:
            out.append((top, bottom, x, x + bw))
    return out


def _text_side(ink: NDArray[np.bool_], box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The barcode's box grown over the text block on whichever side of its bars' ends
    holds more ink."""
    r0, r1, c0, c1 = box
    rows, cols = ink.shape
    depth = int(round(TEXT_DEPTH * (c1 - c0)))
    side = int(round(SIDE_MARGIN * (c1 - c0)))
    lo, hi = max(0, c0 - side), min(cols, c1 + side)
    above = ink[max(0, r0 - depth) : r0, lo:hi].sum()
    below = ink[r1 : min(rows, r1 + depth), lo:hi].sum()
    if above >= below:
        return max(0, r0 - depth), r1, lo, hi
    return r0, min(rows, r1 + depth), lo, hi


def stamp_mask(ink: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """True over every till stamp found in ``ink`` (a barcode and its text block), with
    bars along either axis."""
    ink = np.asarray(ink, dtype=bool)
    mask = np.zeros(ink.shape, dtype=bool)
    for box in barcode_boxes(ink):
        r0, r1, c0, c1 = _text_side(ink, box)
        mask[r0:r1, c0:c1] = True
    turned = np.ascontiguousarray(ink.T)
    for box in barcode_boxes(turned):
        r0, r1, c0, c1 = _text_side(turned, box)
        mask[c0:c1, r0:r1] = True
    return mask
