"""Steamers: bets taken at a price that then collapsed across bookmakers.

When a selection's price falls sharply at several bookmakers at once, the market has
learned something; punters who took the long price just before knew it first (inside
information, or a coordinated gamble). Screening looks at every selection with fresh price
snapshots, measures the fall per bookmaker on the winnings part of the price (11.0 -> 6.0 is
a 50% fall) and takes the median over bookmakers. Defaults: a median fall of 30% or more at
2 or more bookmakers within 24 hours; a bet counts when its price was at least 1.5 times
today's. ``value`` is the median fall / ``min_drop``.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from types import MappingProxyType

from sqlmodel import Session, col, select

from rules.kinds import _pattern_common as pc
from rules.types import Finding, Rule, Trigger
from store.odds import price_drop, steamer_bets
from store.trading import PriceSnapshot

DEFAULTS = MappingProxyType(
    {"window_hours": 24, "min_drop": 0.30, "min_bookmakers": 2, "min_price_ratio": 1.5}
)


class Steamer:
    name = "steamer"
    defaults = DEFAULTS
    triggers = frozenset({"schedule"})

    def evaluate(self, *, session: Session, rule: Rule, trigger: Trigger) -> list[Finding]:
        p = pc.params_of(rule, DEFAULTS)
        until = pc.utc(trigger.at)
        since = until - timedelta(hours=float(p["window_hours"]))
        selections = session.exec(
            select(PriceSnapshot.selection)
            .where(col(PriceSnapshot.at) >= since, col(PriceSnapshot.at) <= until)
            .distinct()
        ).all()
        by_pivot: dict[tuple[str, int], list[tuple[int, str, float]]] = defaultdict(list)
        for selection in sorted(set(selections)):
            drop = price_drop(session=session, selection=selection, since=since, until=until)
            if drop is None or drop.bookmakers < int(p["min_bookmakers"]):
                continue
            if drop.median_drop < float(p["min_drop"]):
                continue
            bets = steamer_bets(
                session=session,
                selection=selection,
                current_odds=drop.to_odds,
                min_ratio=float(p["min_price_ratio"]),
                window=until - since,
                now=until,
            )
            for bet in bets:
                pivot = pc.pivot_of_bet(session, bet)
                if pivot is not None:
                    by_pivot[pivot].append((int(bet.id), selection, drop.median_drop))  # type: ignore[arg-type]
        findings = []
        for (kind, pid), hits in sorted(by_pivot.items()):
            worst = max(h[2] for h in hits)
            evidence, confidence = pc.evidence_of(
                session, [h[0] for h in hits], pivot_kind=kind, pivot_id=pid
            )
            findings.append(
                Finding(
                    pivot_kind=kind,
                    pivot_id=pid,
                    value=round(pc.ratio(worst, float(p["min_drop"])), 4),
                    figures={
                        "median_drop_percent": round(worst * 100, 1),
                        "min_drop_percent": round(float(p["min_drop"]) * 100, 1),
                        "selections": ", ".join(sorted({h[1] for h in hits})),
                        "bets_before_drop": len(hits),
                        "window_hours": p["window_hours"],
                    },
                    evidence=evidence,
                    window_start=since,
                    window_end=until,
                    link_confidence=confidence,
                )
            )
        return findings


KIND = Steamer()
