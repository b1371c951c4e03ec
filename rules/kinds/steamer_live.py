"""Steamers as they happen: bets taken at a price that collapsed shortly afterwards.

Triggered by the odds feed (``odds_snapshot``: new prices of one selection, optionally of
one event).  The fall is measured over the ``window_minutes`` up to the snapshot, per
bookmaker from the price in force when the window opened (the last one posted in the
``price_in_force_hours`` before it, else the window's first) to the latest, on the winnings
part (11.0 -> 6.0 is a 50% fall), then the median over bookmakers.  When it reaches
``min_drop`` at ``min_bookmakers`` or more, every bet on the selection placed in the
``bet_window_minutes`` before the snapshot at a price the market has since fallen from by
``min_bet_drop`` or more (not void, not settled by then) is evidence: one finding per pivot
(the customer, else the handwriting cluster of the slip).

Defaults: a 30% median fall at 2+ bookmakers within 60 minutes; bets of the 60 minutes
before whose own price has since fallen 30% or more.  ``value`` is the median fall /
``min_drop``.  (The daily ``steamer`` rule screens the day's open bets over 24 hours.)
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from sqlmodel import Session

from rules import context
from rules.kinds import _pattern_common as pc
from rules.types import Finding, Rule, Trigger
from store.odds import bets_at_longer_price, price_drop

DEFAULTS = MappingProxyType(
    {
        "window_minutes": 60,
        "min_drop": 0.30,
        "min_bookmakers": 2,
        "price_in_force_hours": 24,
        "bet_window_minutes": 60,
        "min_bet_drop": 0.30,
        "max_evidence": 200,
    }
)


def _windows(p: dict[str, Any]) -> tuple[timedelta, timedelta]:
    return timedelta(minutes=float(p["window_minutes"])), timedelta(
        minutes=float(p["bet_window_minutes"])
    )


class SteamerLive:
    name = "steamer_live"
    defaults = DEFAULTS
    triggers = frozenset({"odds_snapshot"})

    def lookback(self, rule: Rule) -> timedelta:
        return max(_windows(pc.params_of(rule, DEFAULTS)))

    def evaluate(self, *, session: Session, rule: Rule, trigger: Trigger) -> list[Finding]:
        if trigger.selection is None:
            return []
        p = pc.params_of(rule, DEFAULTS)
        price_window, bet_window = _windows(p)
        until = pc.utc(trigger.at)
        since = until - price_window
        drop = price_drop(
            session=session,
            selection=trigger.selection,
            since=since,
            until=until,
            event_ref=trigger.event_ref,
            opened_since=since - timedelta(hours=float(p["price_in_force_hours"])),
        )
        min_drop = float(p["min_drop"])
        if drop is None or drop.bookmakers < int(p["min_bookmakers"]):
            return []
        if drop.median_drop < min_drop:
            return []
        bets = bets_at_longer_price(
            session=session,
            selection=trigger.selection,
            current_odds=drop.to_odds,
            min_fall=float(p["min_bet_drop"]),
            since=until - bet_window,
            until=until,
            event_ref=trigger.event_ref,
        )
        by_pivot: dict[tuple[str, int], list[tuple[int, float]]] = defaultdict(list)
        for bet_id, odds in bets:
            pivot = context.pivot_of_bet(session=session, bet_id=bet_id)
            if pivot is not None:  # an anonymous slip not clustered yet has no pivot
                by_pivot[pivot].append((bet_id, odds))
        findings = []
        for (kind, pid), hits in sorted(by_pivot.items()):
            evidence, confidence = pc.evidence_of(
                session,
                [b for b, _ in hits],
                pivot_kind=kind,
                pivot_id=pid,
                cap=int(p["max_evidence"]),
            )
            findings.append(
                Finding(
                    pivot_kind=kind,
                    pivot_id=pid,
                    value=round(pc.ratio(drop.median_drop, min_drop), 4),
                    figures={
                        "selection": trigger.selection,
                        "event_ref": trigger.event_ref or "",
                        "median_drop_percent": round(drop.median_drop * 100, 1),
                        "min_drop_percent": round(min_drop * 100, 1),
                        "bookmakers": drop.bookmakers,
                        "min_bookmakers": int(p["min_bookmakers"]),
                        "from_odds": drop.from_odds,
                        "to_odds": drop.to_odds,
                        "best_bet_odds": max(o for _, o in hits),
                        "bets_before_drop": len(hits),
                        "window_minutes": p["window_minutes"],
                        "bet_window_minutes": p["bet_window_minutes"],
                    },
                    evidence=evidence,
                    window_start=since,
                    window_end=until,
                    link_confidence=confidence,
                )
            )
        return findings


KIND = SteamerLive()
