"""Rule kind: customer accounts whose slips, taken together, are one hand.

`linked_accounts` finds two accounts in one handwriting cluster.  But slip-level clustering
keeps pairwise precision at 0.98 slip by slip, so it links few of a regular's slips, and two
accounts of one person often share no cluster at all (held-out generated writers with 16 slips
each, dealt into two accounts of 8: clustering linked none of 240 such account pairs).
Compared as wholes (`cv.accounts.account_links`: the mean cosine over every cross pair of
their slips against each account's own cohesion), 216 of those 240 were found, 5 wrongly
(bench/account_links.py, bench/ACCURACY.md session 23).

Screened on the schedule over every account with ``min_slips`` usable slips in the window
(active model's vectors).  Accounts linked to one another form one finding, pivoted on the
lowest customer id.  Value: the number of accounts.  Link confidence: one less the number of
different-writer accounts expected to score as high among those compared (the fitted
impostor tail of the weakest link's size class, `cv.accounts.SIZE_CLASSES`), at least 0.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sqlmodel import Session

from cv.accounts import (
    ACCOUNT_MIN_SLIPS,
    SIZE_CLASSES,
    AccountLink,
    account_links,
    eligible_accounts,
    size_class,
)
from rules import context
from rules.types import Finding, Rule, Trigger
from store.clustering import account_vectors


class MatchingAccounts:
    name = "matching_accounts"
    defaults = {
        "min_slips": ACCOUNT_MIN_SLIPS,
        # None: cv.accounts.ratio_threshold for the accounts compared (a number overrides it)
        "min_ratio": None,
    }
    triggers = frozenset({"schedule"})

    def check_params(self, params: Mapping[str, object]) -> tuple[str, str] | None:
        """The rule loader's check: accounts smaller than any size class need a ratio."""
        smallest, fewest = SIZE_CLASSES[0].slips, params["min_slips"]
        uncalibrated = isinstance(fewest, int | float) and fewest < smallest
        if uncalibrated and params.get("min_ratio") is None:
            return "min_slips", f"below {smallest} the ratio is not calibrated: set min_ratio too"
        return None

    def evaluate(self, *, session: Session, rule: Rule, trigger: Trigger) -> list[Finding]:
        since = trigger.at - rule.window if rule.window else None
        vectors = account_vectors(
            session=session,
            model_version=context.model_version(session),
            since=since,
            until=trigger.at,
        )
        minimum = rule.params.get("min_ratio")
        links = account_links(
            vectors,
            min_slips=int(rule.params["min_slips"]),
            threshold=None if minimum is None else float(minimum),
        )
        if not links:  # the usual day: no second pass over the vectors
            return []
        compared = len(eligible_accounts(vectors, min_slips=int(rule.params["min_slips"])))
        out = []
        for group, inside in _groups(links):
            rows = [
                r
                for c in group
                for r in context.customer_rows(
                    session=session, customer_id=c, since=since, until=trigger.at
                )
            ]
            weakest = min(inside, key=lambda lk: lk.ratio)
            out.append(
                Finding(
                    pivot_kind="customer",
                    pivot_id=group[0],
                    value=float(len(group)),
                    figures={
                        "accounts": len(group),
                        "slips": sum(len(vectors[c]) for c in group),
                        "ratio": round(weakest.ratio, 4),
                        "accounts_compared": compared,
                        "what": "customer accounts whose slips are one hand",
                    },
                    evidence=context.evidence(rows, customers=group),
                    window_start=since,
                    window_end=trigger.at,
                    link_confidence=_confidence(weakest, compared),
                )
            )
        return out


KIND = MatchingAccounts()


def _groups(links: list[AccountLink]) -> list[tuple[list[int], list[AccountLink]]]:
    """Accounts joined by links (connected components), each with its links."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not links:
        return []
    ids = sorted({int(lk.a) for lk in links} | {int(lk.b) for lk in links})
    at = {c: i for i, c in enumerate(ids)}
    rows = [at[int(lk.a)] for lk in links]
    cols = [at[int(lk.b)] for lk in links]
    graph = coo_matrix((np.ones(len(links)), (rows, cols)), shape=(len(ids), len(ids)))
    _, label = connected_components(graph, directed=False)
    groups: dict[int, tuple[list[int], list[AccountLink]]] = {}
    for c in ids:
        groups.setdefault(int(label[at[c]]), ([], []))[0].append(c)
    for lk in links:
        groups[int(label[at[int(lk.a)]])][1].append(lk)
    return sorted(groups.values(), key=lambda g: g[0])


def _confidence(link: AccountLink, compared: int) -> float:
    # accounts under the smallest class (an operator's min_slips with min_ratio): its tail
    smaller = max(min(link.slips_a, link.slips_b), SIZE_CLASSES[0].slips)
    expected = size_class(smaller).tail.sf(link.ratio) * max(compared - 1, 1)
    return round(max(0.0, 1.0 - expected), 4)
