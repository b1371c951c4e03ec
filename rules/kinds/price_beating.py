"""Rule 16: price beating, consistently taking prices better than the starting price.

A punter whose fixed-odds prices beat the starting price (SP) on average, and on most bets,
is either informed or arbitraging: traders review (and may factor) such accounts. Over the
rule's window (default 90 days) the pivot's settled fixed-odds singles whose SP is known are
compared: at least 30 bets, a mean edge (taken / SP - 1) of 2% or more, and the taken price
above SP on at least 60% of them. ``value`` is the mean edge.

Starting prices are not stored on bets. `starting_prices` reads them, per leg, from
(1) the rule's ``starting_prices`` param (leg id -> SP; for back-tests and imports), then
(2) when ``sp_from_results`` is true, the results table of the trading work
(``selection_results.starting_price``, matched on event name, event date and selection) once
that table exists. A leg with no known SP is left out; without 30 such bets the rule is quiet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from sqlalchemy import func, inspect
from sqlmodel import Session, col, select

from rules.kinds import _pattern_common as pc
from rules.types import Finding, Rule, Trigger
from store.models import Bet, Leg

DEFAULTS = MappingProxyType(
    {
        "min_bets": 30,  # settled fixed-odds singles with a known SP
        "min_edge": 0.02,  # mean (taken / SP - 1)
        "min_beat_share": 0.6,  # share of those bets whose taken price beat SP
        "starting_prices": {},  # leg id -> SP, consulted first
        "sp_from_results": True,  # then selection_results.starting_price, when present
        "max_evidence": 200,
    }
)
DEFAULT_WINDOW = timedelta(days=90)
_RESULTS_TABLE = "selection_results"
_has_results: dict[str, bool] = {}


def starting_price(*, session: Session, leg_id: int, params: Mapping[str, Any]) -> float | None:
    """The starting price of one leg, or None when unknown."""
    leg = session.get(Leg, leg_id)
    if leg is None:
        return None
    found = starting_prices(
        session=session,
        legs=[(leg_id, leg.event, leg.event_start, leg.selection_key)],
        params=params,
    )
    return found.get(leg_id)


def starting_prices(
    *,
    session: Session,
    legs: Iterable[tuple[int, str, datetime | None, str]],
    params: Mapping[str, Any],
) -> dict[int, float]:
    """Known starting prices of ``legs`` (leg id, event, event start, selection key): leg id ->
    SP. Legs with no known SP are absent."""
    legs = list(legs)
    given = params.get("starting_prices") or {}
    out: dict[int, float] = {}
    for leg_id, *_ in legs:
        sp = given.get(str(leg_id), given.get(leg_id)) if isinstance(given, Mapping) else None
        if sp is not None and float(sp) > 1.0:
            out[leg_id] = float(sp)
    missing = [leg for leg in legs if leg[0] not in out]
    if missing and params.get("sp_from_results", True) and _results_table(session):
        out.update(_from_results(session, missing))
    return out


def _results_table(session: Session) -> bool:
    bind = session.get_bind()
    url = str(bind.engine.url)
    if url not in _has_results:
        _has_results[url] = inspect(bind).has_table(_RESULTS_TABLE)
    return _has_results[url]


def _from_results(
    session: Session, legs: list[tuple[int, str, datetime | None, str]]
) -> dict[int, float]:
    try:
        from store.trading import Event, SelectionResult
    except ImportError:  # the trading tables are not in this build
        return {}
    names = sorted({event.strip().lower() for _, event, _, _ in legs})
    keys = sorted({key for _, _, _, key in legs})
    rows = session.exec(
        select(func.lower(Event.name), Event.start_time, SelectionResult.selection_key,
               SelectionResult.starting_price)
        .join(SelectionResult, col(SelectionResult.event_id) == col(Event.id))
        .where(func.lower(Event.name).in_(names), col(SelectionResult.selection_key).in_(keys),
               col(SelectionResult.starting_price).is_not(None))
    ).all()  # fmt: skip
    by_key: dict[tuple[str, str], list[tuple[datetime, float]]] = {}
    for name, start, key, sp in rows:
        if sp is not None:
            by_key.setdefault((name, key), []).append((pc.utc(start), float(sp)))
    out: dict[int, float] = {}
    for leg_id, event, event_start, key in legs:
        for start, sp in by_key.get((event.strip().lower(), key), []):
            # same event name on another day is another race
            if event_start is None or pc.utc(event_start).date() == start.date():
                out[leg_id] = sp
                break
    return out


class PriceBeating:
    name = "price_beating"
    defaults = DEFAULTS
    triggers = frozenset({"bet_settled", "schedule"})

    def evaluate(self, *, session: Session, rule: Rule, trigger: Trigger) -> list[Finding]:
        p = pc.params_of(rule, DEFAULTS)
        window = pc.window_of(rule, DEFAULT_WINDOW)
        at = pc.utc(trigger.at)
        fixed_settled = [col(Bet.status).in_(pc.SETTLED), col(Bet.odds).is_not(None)]
        having = func.count(col(Bet.id)) >= int(p["min_bets"])
        findings = []
        for kind, pid, anchor, _bet in pc.pivots_to_evaluate(
            session, trigger, since=at - window, until=at, where=fixed_settled, having=having
        ):
            finding = self._one(session, p, kind, pid, anchor, window)
            if finding is not None:
                findings.append(finding)
        return findings

    def _one(self, session, p, kind, pid, anchor, window):  # type: ignore[no-untyped-def]
        since = anchor - window
        rows = session.exec(
            select(Bet.id, Leg.id, Leg.odds, Leg.event, Leg.event_start, Leg.selection_key,
                   func.count(Leg.id).over(partition_by=Leg.bet_id))
            .join(Leg, col(Leg.bet_id) == col(Bet.id))
            .where(pc.pivot_ids_clause(session, kind, pid, since=since, until=anchor),
                   col(Bet.status).in_(pc.SETTLED),
                   col(Bet.odds).is_not(None))
            .order_by(col(Bet.placed_at).desc(), col(Bet.id).desc())
        ).all()  # fmt: skip
        singles = [(int(b), int(lg), float(o), e, s, k)
                   for b, lg, o, e, s, k, n in rows if n == 1 and o is not None]  # fmt: skip
        if len(singles) < int(p["min_bets"]):
            return None
        sps = starting_prices(
            session=session, legs=[(lg, e, s, k) for _, lg, _, e, s, k in singles], params=p
        )
        compared = [(b, o, sps[lg]) for b, lg, o, _, _, _ in singles if lg in sps]
        n = len(compared)
        if n < int(p["min_bets"]):
            return None
        edge = sum(o / sp - 1.0 for _, o, sp in compared) / n
        beat = sum(1 for _, o, sp in compared if o > sp) / n
        if edge < float(p["min_edge"]) or beat < float(p["min_beat_share"]):
            return None
        beating = [b for b, o, sp in compared if o > sp]
        evidence, confidence = pc.evidence_of(session, beating, pivot_kind=kind, pivot_id=pid,
                                              cap=int(p["max_evidence"]))  # fmt: skip
        return Finding(
            pivot_kind=kind,
            pivot_id=pid,
            value=round(edge, 6),
            figures={
                "bets_compared": n,
                "min_bets": int(p["min_bets"]),
                "mean_edge": round(edge, 6),
                "min_edge": float(p["min_edge"]),
                "beat_share": round(beat, 4),
                "min_beat_share": float(p["min_beat_share"]),
                "bets_without_sp": len(singles) - n,
                "mean_taken_odds": round(sum(o for _, o, _ in compared) / n, 4),
                "mean_starting_price": round(sum(sp for _, _, sp in compared) / n, 4),
                "window_days": round(window / timedelta(days=1), 3),
            },
            evidence=evidence,
            window_start=since,
            window_end=anchor,
            link_confidence=confidence,
        )


KIND = PriceBeating()
