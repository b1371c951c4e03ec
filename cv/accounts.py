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
generated writers (bench/account_links.py, bench/ACCURACY.md, session 23).

Pure functions: vectors in, links out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "ACCOUNT_MIN_COHESION",
    "ACCOUNT_MIN_SLIPS",
    "ACCOUNT_RATIO_THRESHOLD",
    "AccountLink",
    "account_links",
    "eligible_accounts",
    "ratio_threshold",
]

#: Accounts with fewer usable slips are not compared: the cohesion of a handful of slips is
#: too noisy (held-out accounts of three slips: the ratio's impostor tail reached 1.07).
ACCOUNT_MIN_SLIPS = 8
#: An account whose slips hardly resemble each other (several writers, or slips of little
#: ink) has no one hand to match; its ratio would be a small number's quotient.
ACCOUNT_MIN_COHESION = 0.15
#: The ratio two accounts need, in a collection of up to :data:`REFERENCE_ACCOUNTS` eligible
#: accounts: chosen on fit-split writers never used to fit the shipped model (600 writers x
#: 16 slips in two accounts of 8, bench/account_links.py --fit), the lowest ratio at which
#: their account pairs reached precision 0.98 (0.97: P 0.983, R 0.921).
ACCOUNT_RATIO_THRESHOLD = 0.97
#: Eligible accounts in that measurement, and the normal (mean, sd) whose upper tail
#: matches its 679,794 different-writer ratios (`cv.cluster.impostor_tail`): with more
#: accounts each one meets more look-alikes, so the threshold rises as the clustering's does
#: (`cv.cluster.Calibration.for_collection`).  Checked at twice that scale (session 24:
#: 1,250 fit-split writers x 16 slips, 2,426 accounts, 2.94 M different-writer pairs, tail
#: (0.515, 0.115)): the raised threshold 0.989 kept P 0.988 (R 0.780), where 0.97 fell to
#: P 0.948.  At four times it (session 25, 4,852 accounts) 1.006 kept P 0.992 but R fell to
#: 0.480, where 0.99 gives P 0.977 / R 0.762: the normal tail over-predicts the far tail, so
#: the raise is stricter than it needs to be at that size.
REFERENCE_ACCOUNTS = 1167
IMPOSTOR_TAIL = (0.532, 0.110)


@dataclass(frozen=True)
class AccountLink:
    """Two accounts whose slips are one hand: their ratio and their usable slips."""

    a: Any
    b: Any
    ratio: float
    slips_a: int
    slips_b: int


def ratio_threshold(accounts: int, *, base: float = ACCOUNT_RATIO_THRESHOLD) -> float:
    """The ratio needed among ``accounts`` eligible accounts: ``base`` up to the reference
    count, above it the ratio whose chance under the impostor tail is cut in proportion
    (``sf(t') = sf(t) (m - 1) / (n - 1)``), so each account expects as many false matches."""
    if accounts <= REFERENCE_ACCOUNTS:
        return base
    from scipy.special import ndtr, ndtri

    mean, sd = IMPOSTOR_TAIL
    beyond = (1.0 - ndtr((base - mean) / sd)) * (REFERENCE_ACCOUNTS - 1.0) / (accounts - 1.0)
    return float(mean + sd * ndtri(1.0 - beyond)) if beyond > 0 else float("inf")


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


def account_links(
    vectors: Mapping[Any, ArrayLike],
    *,
    min_slips: int = ACCOUNT_MIN_SLIPS,
    threshold: float | None = None,
    candidates: int = 20,
) -> list[AccountLink]:
    """Pairs of accounts whose slips are one hand, best first.

    Parameters
    ----------
    vectors : mapping account -> (n, d) array_like
        Each account's usable slips' embeddings (one model version).
    min_slips : int
        Accounts with fewer slips are left out.
    threshold : float, optional
        The ratio a pair needs; default :func:`ratio_threshold` for the eligible accounts.
    candidates : int
        Each account keeps its this many highest ratios (an account of one hand matching
        more accounts than that is the operator's to find in the alerts already raised).
        The ratios are computed exactly, every eligible account against every other one:
        0.5 s for 2,000 accounts, 9 s for 20,000 (quadratic).

    Returns
    -------
    list of AccountLink, ``a`` before ``b`` in the mapping's order, highest ratio first.
    """
    keys, sums, counts, cohesion = _summaries(vectors, min_slips)
    if len(keys) < 2:
        return []
    t = ratio_threshold(len(keys)) if threshold is None else float(threshold)
    s = np.asarray(sums)
    n = np.asarray(counts, dtype=np.float64)
    w = np.asarray(cohesion)
    scale = n * np.sqrt(w)  # ratio = (s_a . s_b) / (scale_a * scale_b)
    unit = s / scale[:, None]
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
                if ratio >= t:
                    found[(min(start + r, c), max(start + r, c))] = ratio
    links = [AccountLink(keys[i], keys[j], r, int(n[i]), int(n[j])) for (i, j), r in found.items()]
    return sorted(links, key=lambda link: -link.ratio)
