"""Customer accounts whose slips, taken together, are one hand.

Slip-level clustering must keep pairwise precision at 0.98, and a single slip carries little
writer evidence: with a thousand writers in a collection it links almost no pair at all, and
a regular's 30 slips stay apart because their own slips fill their score offsets' band.  An
account is different: a customer's slips are his own handwriting (mostly), so the account
can be compared as a whole.  The score of two accounts A and B is the mean cosine over every
cross pair of their slips divided by each account's own cohesion (the mean cosine over its
slip pairs)::

    ratio(A, B) = cross(A, B) / sqrt(within(A) * within(B))

the centroid cosine with the self-pairs left out of the norms.  Two accounts of one writer
score about 1 whatever their sizes (their slips are as alike across the accounts as within
each); two writers score what their hands share relative to how consistent each is, and the
noise of both means falls with the number of slips.  So a writer with a few slips in each
account is found where no slip pair clears the clustering's threshold.  Measured on held-out
generated writers (bench/account_links.py, bench/ACCURACY.md, sessions 23-26).

The noise is why the ratio needed depends on the smaller account's size (:data:`SIZE_CLASSES`:
6, 7, 8 or more slips) and on how many accounts are compared (:func:`ratio_threshold`).

Pure functions: vectors in, links out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "ACCOUNT_MIN_COHESION",
    "ACCOUNT_MIN_SLIPS",
    "ACCOUNT_RATIO_THRESHOLD",
    "AccountLink",
    "AccountProfiles",
    "IMPOSTOR_TAIL",
    "ImpostorTail",
    "REFERENCE_ACCOUNTS",
    "SIZE_CLASSES",
    "SizeClass",
    "account_links",
    "account_profiles",
    "eligible_accounts",
    "fit_impostor_tail",
    "likely_accounts",
    "ratio_threshold",
    "size_class",
    "slip_account_scores",
]

#: Accounts with fewer usable slips are not compared: the cohesion of a handful of slips is
#: too noisy.  Two accounts of 5 slips reach precision 0.98 only above a ratio of 1.01-1.03,
#: where 0.26-0.31 of such pairs are found, and of 4 only above 1.09 (0.04); of 6, 0.43-0.56
#: (bench/ACCURACY.md, session 26).
ACCOUNT_MIN_SLIPS = 6
#: An account whose slips hardly resemble each other (several writers, or slips of little
#: ink) has no one hand to match; its ratio would be a small number's quotient.
ACCOUNT_MIN_COHESION = 0.15
#: The ratio two accounts of 8 or more slips need, in a collection of up to
#: :data:`REFERENCE_ACCOUNTS` eligible accounts: the lowest ratio at which account pairs
#: reach precision 0.98, pooled over 8 random halves of 1,250 fit-split writers the shipped
#: model was not fitted on (16 slips each, two accounts of 8; `bench/account_links.py
#: --fit`, bench/ACCURACY.md session 26).
#: Session 23 chose 0.97 on other writers and the model of then; today's model needs 0.978.
ACCOUNT_RATIO_THRESHOLD = 0.978
#: Eligible accounts in those halves.  With more accounts each one meets more look-alikes,
#: so the threshold rises (:func:`ratio_threshold`), as the clustering's does
#: (`cv.cluster.Calibration.for_collection`).
REFERENCE_ACCOUNTS = 1209


@dataclass(frozen=True)
class ImpostorTail:
    """The upper tail of different-writer account ratios: a generalised Pareto
    distribution over ``start``, the ratio that ``share`` of different-writer pairs exceed
    (peaks over threshold; Pickands 1975, Davison & Smith 1990).

    A negative ``shape`` gives the tail an end, ``start - scale / shape``: a ratio has a
    ceiling that two different hands do not reach, however many pairs are compared.  A normal
    fitted to the top 0.1 % and 0.01 % (as `cv.cluster.impostor_tail` fits slip scores)
    over-predicts the far tail of the ratios: at 10^-6 of pairs it put the ratio at 1.055
    where 2.9 M measured pairs gave 0.997 (bench/ACCURACY.md, session 26)."""

    start: float
    share: float
    shape: float
    scale: float

    def sf(self, ratio: float) -> float:
        """The share of different-writer pairs whose ratio is ``ratio`` or more (the
        fitted part only: at most :attr:`share`)."""
        z = max(float(ratio) - self.start, 0.0) / self.scale
        if self.shape == 0.0:
            return self.share * float(np.exp(-z))
        base = 1.0 + self.shape * z
        return self.share * float(base ** (-1.0 / self.shape)) if base > 0 else 0.0

    def isf(self, share: float) -> float:
        """The ratio that ``share`` (at most :attr:`share`) of different-writer pairs reach."""
        q = min(float(share) / self.share, 1.0)
        if self.shape == 0.0:
            return self.start - self.scale * float(np.log(q))
        return self.start + self.scale * float(q ** (-self.shape) - 1.0) / self.shape


def fit_impostor_tail(ratios: ArrayLike, *, share: float = 1e-3) -> ImpostorTail | None:
    """:class:`ImpostorTail` fitted (maximum likelihood) to the top ``share`` of these
    different-writer ratios; None with fewer than 200 ratios in that top."""
    from scipy.stats import genpareto

    r = np.asarray(ratios, dtype=np.float64).reshape(-1)
    if r.size * share < 200:
        return None
    start = float(np.quantile(r, 1.0 - share))
    excess = r[r > start] - start
    shape, _, scale = genpareto.fit(excess, floc=0.0)
    return ImpostorTail(start, excess.size / r.size, float(shape), float(scale))


#: The shipped tail: `fit_impostor_tail` of the 2,940,348 different-writer ratios of those
#: 1,250 writers' 2,426 accounts (its end 1.014; the highest ratio measured 1.0065).  Judged
#: on writers it was not fitted on, the raised threshold held precision near 0.98 from 1,200
#: to 4,852 accounts (bench/ACCURACY.md, session 26).
IMPOSTOR_TAIL = ImpostorTail(0.8725, 1e-3, -0.302, 0.0429)


@dataclass(frozen=True)
class SizeClass:
    """The rule's constants for account pairs whose smaller account holds ``slips`` usable
    slips (the largest class: that many or more): ``base``, the ratio needed among up to
    ``reference`` eligible accounts, and the different-writer ratios' ``tail``.  Each comes
    from `bench/account_links.py DIR --sizes k,k --fit` on fit-split writers the shipped model
    was not fitted on (bench/ACCURACY.md, session 26)."""

    slips: int
    base: float
    reference: int
    tail: ImpostorTail


#: Smallest first.  Fewer slips, noisier means: a higher base and a tail that ends later.
SIZE_CLASSES = (
    SizeClass(6, 1.0018, 1244, ImpostorTail(0.8787, 1e-3, -0.2459, 0.0440)),
    SizeClass(7, 0.9917, 1238, ImpostorTail(0.8757, 1e-3, -0.2673, 0.0424)),
    SizeClass(8, ACCOUNT_RATIO_THRESHOLD, REFERENCE_ACCOUNTS, IMPOSTOR_TAIL),
)


@dataclass(frozen=True)
class AccountLink:
    """Two accounts whose slips are one hand: their ratio and their usable slips."""

    a: Any
    b: Any
    ratio: float
    slips_a: int
    slips_b: int


def size_class(slips: int, classes: Sequence[SizeClass] = SIZE_CLASSES) -> SizeClass:
    """The constants for a pair whose smaller account holds ``slips`` usable slips."""
    if slips < classes[0].slips:
        raise ValueError(
            f"accounts of {slips} slips have no calibrated ratio (the rule compares"
            f" {classes[0].slips} or more; give a threshold to compare fewer)"
        )
    return [c for c in classes if c.slips <= slips][-1]


def ratio_threshold(
    accounts: int, *, slips: int = SIZE_CLASSES[-1].slips, constants: SizeClass | None = None
) -> float:
    """The ratio two accounts need, the smaller holding ``slips`` usable slips, among
    ``accounts`` eligible accounts: the size class's base up to its reference count, above it
    the ratio whose share under the class's impostor tail is cut in proportion
    (``sf(t') = sf(t) (m - 1) / (n - 1)``), so each account expects as many false matches.
    ``constants`` replaces the shipped class (as `bench/account_links.py --fit` fits one)."""
    c = constants or size_class(slips)
    if accounts <= c.reference:
        return c.base
    return max(c.base, c.tail.isf(c.tail.sf(c.base) * (c.reference - 1.0) / (accounts - 1.0)))


def _summaries(
    vectors: Mapping[Any, ArrayLike], min_slips: int
) -> tuple[list[Any], list[NDArray[np.float64]], list[int], list[float]]:
    """The accounts compared (enough slips, one hand), their slips' vector sums, slip counts
    and cohesions (mean cosine over their slip pairs)."""
    from cv.index import normalise_rows  # faiss stays out of the rules' import

    keys, sums, counts, cohesion = [], [], [], []
    for key, v in vectors.items():
        x = np.asarray(v)
        if x.ndim != 2 or len(x) < max(int(min_slips), 2):
            continue
        x = normalise_rows(x, name=f"account {key!r}").astype(np.float64)
        s = x.sum(axis=0)
        n = len(x)
        within = (float(s @ s) - n) / (n * (n - 1))
        if within < ACCOUNT_MIN_COHESION:
            continue
        keys.append(key)
        sums.append(s)
        counts.append(n)
        cohesion.append(within)
    return keys, sums, counts, cohesion


def eligible_accounts(
    vectors: Mapping[Any, ArrayLike], *, min_slips: int = ACCOUNT_MIN_SLIPS
) -> list[Any]:
    """The accounts :func:`account_links` compares: ``min_slips`` or more slips and a
    cohesion of at least :data:`ACCOUNT_MIN_COHESION`."""
    return _summaries(vectors, min_slips)[0]


@dataclass(frozen=True)
class AccountProfiles:
    """Eligible accounts as the ratio reads them: each account's slip-vector sum divided by
    its slips times the root of its cohesion (``scaled``: the ratio of two accounts is the dot
    product of their rows), and its usable slips."""

    keys: list[Any]
    scaled: NDArray[np.float64]
    counts: list[int]


def account_profiles(
    vectors: Mapping[Any, ArrayLike], *, min_slips: int = ACCOUNT_MIN_SLIPS
) -> AccountProfiles:
    """:class:`AccountProfiles` of the accounts with ``min_slips`` or more slips and one hand."""
    keys, sums, counts, cohesion = _summaries(vectors, min_slips)
    if not keys:
        return AccountProfiles([], np.zeros((0, 0)), [])
    scale = np.asarray(counts, dtype=np.float64) * np.sqrt(np.asarray(cohesion))
    return AccountProfiles(keys, np.asarray(sums) / scale[:, None], counts)


def account_links(
    vectors: Mapping[Any, ArrayLike],
    *,
    min_slips: int = ACCOUNT_MIN_SLIPS,
    threshold: float | None = None,
    candidates: int = 20,
    classes: Sequence[SizeClass] = SIZE_CLASSES,
) -> list[AccountLink]:
    """Pairs of accounts whose slips are one hand, best first.

    Parameters
    ----------
    vectors : mapping account -> (n, d) array_like
        Each account's usable slips' embeddings (one model version).
    min_slips : int
        Accounts with fewer slips are left out.
    threshold : float, optional
        The ratio a pair needs; default :func:`ratio_threshold` for the eligible accounts
        and the smaller account's size (then ``min_slips`` must be 6 or more).
    classes : sequence of SizeClass
        The size classes, smallest first (default the shipped ones).
    candidates : int
        Each account keeps its this many highest ratios (an account of one hand matching
        more accounts than that is the operator's to find in the alerts already raised).
        The ratios are computed exactly, every eligible account against every other one:
        0.5 s for 2,000 accounts, 9 s for 20,000 (quadratic).

    Returns
    -------
    list of AccountLink, ``a`` before ``b`` in the mapping's order, highest ratio first.
    """
    if threshold is None:
        size_class(min_slips, classes)  # fewer slips than any class: refuse before any work
    profiles = account_profiles(vectors, min_slips=min_slips)
    keys, counts, unit = profiles.keys, profiles.counts, profiles.scaled
    if len(keys) < 2:
        return []
    # the ratio each size class needs among these accounts (one number when given)
    needed = {
        c.slips: ratio_threshold(len(keys), constants=c) if threshold is None else float(threshold)
        for c in classes
    }
    floor = min(needed.values())
    k = min(int(candidates), len(keys) - 1)
    found: dict[tuple[int, int], float] = {}
    for start in range(0, len(keys), 2048):  # exact: eligible accounts are few
        block = unit[start : start + 2048] @ unit.T
        rows = np.arange(block.shape[0])
        block[rows, start + rows] = -np.inf
        top = np.argpartition(-block, k - 1, axis=1)[:, :k]
        for r, cols in enumerate(top):
            for c in cols.tolist():
                ratio = float(block[r, c])
                if ratio < floor:
                    continue
                if threshold is None:
                    smaller = min(counts[start + r], counts[c])
                    if ratio < needed[size_class(smaller, classes).slips]:
                        continue
                found[(min(start + r, c), max(start + r, c))] = ratio
    links = [AccountLink(keys[i], keys[j], r, counts[i], counts[j]) for (i, j), r in found.items()]
    return sorted(links, key=lambda link: -link.ratio)


def slip_account_scores(slips: ArrayLike, profiles: AccountProfiles) -> NDArray[np.float64]:
    """Each slip's score against each account, (slips, accounts): the slip's mean cosine with
    the account's slips over the root of the account's cohesion (the ratio's form, one slip
    having no cohesion of its own)."""
    from cv.index import normalise_rows

    q = normalise_rows(np.atleast_2d(np.asarray(slips, dtype=np.float64)), name="slips")
    if not profiles.keys:
        return np.zeros((len(q), 0))
    if profiles.scaled.shape[1] != q.shape[1]:
        raise ValueError(
            f"slips have {q.shape[1]} dimensions, the accounts' slips {profiles.scaled.shape[1]}"
        )
    return q @ profiles.scaled.T


def likely_accounts(
    slips: ArrayLike, profiles: AccountProfiles, *, k: int = 5
) -> list[tuple[Any, float, int]]:
    """The ``k`` accounts whose slips the handwriting of one slip, or of several slips of one
    hand (a cluster's anonymous slips; their scores averaged), most resembles, best first, as
    (account, score, usable slips) (:func:`slip_account_scores`).

    A shortlist for a reviewer, not a link: one slip carries too little evidence to name a
    writer at precision 0.98 (held-out writers, 624 accounts of 8 slips, one slip of the
    account's writer against all: its account ranked first for 0.80 of slips, in the top 5 for
    0.95, but P 0.98 only for the 0.7 % scoring highest; bench/ACCURACY.md, session 26)."""
    if not profiles.keys:
        return []
    mean = slip_account_scores(slips, profiles).mean(axis=0)
    best = np.argsort(-mean, kind="stable")[: max(int(k), 0)]
    return [(profiles.keys[i], float(mean[i]), int(profiles.counts[i])) for i in best]
