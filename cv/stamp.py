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
#: (px): a column of check boxes has as many edges, but a box's width apart.
MIN_BARS = 8
MAX_BAR_WIDTH = 12
MAX_BAR_GAP = 5
#: Ink share of a barcode's first and last rows above which its "bars" are the gaps in a
#: band of print (light letters in a dark header bar): a barcode's ends are bars and gaps.
MAX_EDGE_FILL = 0.85
#: The text block beside the barcode: depth in barcode widths, side margin likewise.
TEXT_DEPTH = 0.7
SIDE_MARGIN = 0.06


def barcode_boxes(ink: NDArray[np.bool_]) -> list[tuple[int, int, int, int]]:
    """(row0, row1, col0, col1) of every barcode with vertical bars in ``ink``."""
    img = np.ascontiguousarray(ink, dtype=np.uint8)
    # pixels on vertical runs at least a short bar's height
    runs = cv2.morphologyEx(img, cv2.MORPH_OPEN, np.ones((MIN_BAR_HEIGHT, 1), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(runs, connectivity=8)
    if n <= 1:
        return []
    w, h = stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT]
    bar = (w <= MAX_BAR_WIDTH) & (h <= MAX_BAR_HEIGHT)
    bars = np.isin(labels, np.flatnonzero(bar) + 1).astype(np.uint8)
    # side by side bars (gaps of a few px) close into one block
    block = cv2.morphologyEx(bars, cv2.MORPH_CLOSE, np.ones((1, MAX_BAR_GAP + 1), np.uint8))
    m, blabels, bstats, _ = cv2.connectedComponentsWithStats(block, connectivity=8)
    out = []
    for j in range(1, m):
        x, y, bw, bh = (int(v) for v in bstats[j, :4])
        if bw < 3 * MIN_BAR_HEIGHT or bh > 2 * MAX_BAR_HEIGHT:
            continue
        inside = bars[y : y + bh, x : x + bw] & (blabels[y : y + bh, x : x + bw] == j)
        # count bars along the block's middle row: each 0 -> 1 step is one bar
        row = inside[bh // 2]
        count = int(np.count_nonzero(np.diff(np.concatenate([[0], row])) == 1))
        # a dark band with light letters in it has "bars" too, but is solid along its edges
        block_ink = ink[y : y + bh, x : x + bw]
        edge_fill = min(block_ink[1:3].mean(), block_ink[-3:-1].mean())
        if count >= MIN_BARS and edge_fill < MAX_EDGE_FILL:
            out.append((y, y + bh, x, x + bw))
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
