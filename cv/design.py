"""Which slips share a printed design, so a ranking need not prefer them.

The writer embedding leaks the slip's printed design: on validation writers of the fit split
(fonts the fit never saw, default fusion) the top-1 neighbour shared the query's design 0.34
of the time against 0.25 by chance.  The bias is a tie-breaker among a writer's own slips
rather than a pull towards other writers: between different writers the same design adds
0.03 of the score spread, between one writer's slips 0.30 (the form's boxes shape where and
how large he writes, and leave print behind).  Projecting template directions out of the
embedding (NAP on the true template labels, 1-4 directions, per family or after fusion, or
added to the WCCN scatter) left the rate at 0.32-0.34: the boost is an interaction of
writer and design, not a direction.

So the ranking subtracts a small fixed score from pairs of slips that share a design,
recognised without labels by the print the separator removed: a 24 x 32 area thumbnail of
the work frame's print mask (square-rooted), compared by cosine after centring on the
collection's mean signature.  On the fit and validation slips same-design pairs scored
>= 0.35 and different designs <= 0.11 (1st / 99th percentiles; ROC AUC 1.000), so 0.25
separates them; plain crops (no printed form) carry no signature and are never penalised.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "DESIGN_PENALTY",
    "SAME_DESIGN_COSINE",
    "SIGNATURE_SHAPE",
    "design_penalised",
    "print_signature",
    "same_design",
    "signature_rows",
]

#: (rows, cols) of the print thumbnail; coarse enough that a shifted or re-scanned page of
#: one design still matches itself.
SIGNATURE_SHAPE = (24, 32)
#: Centred cosine above which two signatures are one design (see the module docstring).
SAME_DESIGN_COSINE = 0.25
#: Score taken off pairs of one design.  Chosen on validation writers of the fit split
#: (default fusion; generated mAP / top-1 / template rate (chance), and on the validation
#: writers with 30 slips each): raw cosine 0.622 / 0.740 / 0.34 (0.25) -> 0.622 / 0.750 /
#: 0.27, 30 a writer 0.32 -> 0.20; ranked as `similar` ranks 0.705 / 0.801 / 0.36 ->
#: 0.706 / 0.804 / 0.29, 30 a writer 0.30 -> 0.25.  0.04 overshoots (0.19 / 0.23, below
#: chance) and costs mAP 0.005.
DESIGN_PENALTY = 0.02


def print_signature(print_mask: NDArray[np.bool_]) -> NDArray[np.float32]:
    """(rows * cols,) float32 signature of a slip's printed design from its print mask
    (True = printed ink) in any frame: the share of print per cell, square-rooted (so a
    few dense headings do not outweigh the ruled boxes)."""
    rows, cols = SIGNATURE_SHAPE
    mask = np.asarray(print_mask)
    if mask.ndim != 2 or mask.size == 0:
        raise ValueError(f"print_mask must be a non-empty 2-D array, got shape {mask.shape}")
    small = cv2.resize(mask.astype(np.float32), (cols, rows), interpolation=cv2.INTER_AREA)
    return np.sqrt(np.clip(small, 0.0, 1.0)).ravel().astype(np.float32)


def signature_rows(signatures: Sequence[NDArray[np.float32] | None]) -> NDArray[np.float32]:
    """(n, rows * cols) float32 signatures, a NaN row where a slip has none (a plain crop, an
    unreadable file): the form :func:`same_design` and :func:`design_penalised` read."""
    out = np.full((len(signatures), SIGNATURE_SHAPE[0] * SIGNATURE_SHAPE[1]), np.nan, np.float32)
    for i, sig in enumerate(signatures):
        if sig is not None:
            out[i] = sig
    return out


def same_design(
    signatures: ArrayLike, *, threshold: float = SAME_DESIGN_COSINE
) -> NDArray[np.bool_]:
    """(n, n) True where two slips share a printed design.

    ``signatures`` is (n, d) with a row of NaN for a slip without a printed form (a plain
    crop), which shares a design with nothing.  Signatures are centred on the mean of the
    collection's form slips: a collection of one design then matches nothing (and a
    penalty on every pair would not change a ranking anyway).
    """
    s = np.asarray(signatures, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"signatures must be 2-D (slips, d), got shape {s.shape}")
    form = np.isfinite(s).all(axis=1)
    out = np.zeros((len(s), len(s)), dtype=bool)
    if form.sum() < 2:
        return out
    x = s[form] - s[form].mean(axis=0)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    idx = np.flatnonzero(form)
    out[np.ix_(idx, idx)] = (x @ x.T) > float(threshold)
    return out


def design_penalised(
    scores: ArrayLike, signatures: ArrayLike, *, penalty: float = DESIGN_PENALTY
) -> NDArray[np.float32]:
    """``scores`` (n, n) less ``penalty`` on pairs of different slips that share a design
    (:func:`same_design`); the diagonal is kept."""
    sim = np.array(scores, dtype=np.float32)
    same = same_design(signatures)
    if sim.shape != same.shape:
        raise ValueError(f"scores {sim.shape} and signatures ({len(same)} slips) differ")
    np.fill_diagonal(same, False)
    sim -= np.float32(penalty) * same
    return sim
