"""Rule 13: a run on a selection, money piling onto one runner.

Traders watch for a selection taking a large share of recent bets, and for several punters or
shops backing it within minutes: the mark of inside information or a coordinated "gamble".
Two tests, evaluated for each selection of a newly placed bet:

* share: the selection is on at least ``x`` of the last ``y`` non-void bets, looked at per shop
  (the bet's shop), per region (the shop's region) and across all shops, each scope with its
  own ``x``/``y`` and only counting bets of the last ``share_lookback_hours``;
* burst: within ``burst_minutes`` (default 30) up to the bet, at least 4 distinct punters
  (customers, or handwriting clusters for anonymous bets; an anonymous bet whose slip is not
  clustered is not counted as a punter) or at least 5 distinct shops backed it.

A selection is its normalised name (``Leg.selection_key``) within its event (case-insensitive
event text) unless ``match_event`` is false. ``value`` is the largest count / threshold ratio
over the tests. Findings pivot on the selection itself: ``pivot_kind="selection"``,
``pivot_id`` = the id of the first leg ever stored on it, stable while the run grows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache
from types import MappingProxyType
from typing import Any

from sqlalchemy import ColumnElement, bindparam, func, true
from sqlmodel import Session, col, select

from rules import context
from rules.kinds import _pattern_common as pc
from rules.types import Finding, Rule, Trigger
from store.clustering import ClusterMember
from store.models import Bet, Leg, Shop, Slip

DEFAULTS = MappingProxyType(
    {
        "shop_min_bets": 6,  # x of the last y bets in the bet's shop
        "shop_last_bets": 20,
        "region_min_bets": 15,  # x of the last y bets in the shop's region
        "region_last_bets": 100,
        "all_min_bets": 40,  # x of the last y bets across all shops
        "all_last_bets": 500,
        "share_lookback_hours": 24,  # older bets never count towards a share
        "burst_minutes": 30,
        "burst_min_pivots": 4,  # distinct customers / handwriting clusters
        "burst_min_shops": 5,
        "match_event": True,
        "max_evidence": 200,
    }
)
SCOPES = ("shop", "region", "all")


def selection_filter(event: str, key: str, *, match_event: bool) -> list[ColumnElement[bool]]:
    """Conditions on ``legs`` for one selection (indexed ``selection_key`` first)."""
    conds = [col(Leg.selection_key) == key]
    if match_event:
        conds.append(func.lower(Leg.event) == event.strip().lower())
    return conds


def selection_pivot(session: Session, conds: list[ColumnElement[bool]]) -> int:
    """The id of the first leg stored on the selection: a stable id for the selection."""
    return int(session.exec(select(func.min(Leg.id)).where(*conds)).one())  # type: ignore[arg-type]


@cache
def _on_selection(match_event: bool) -> Any:
    """The bets on one selection placed in ``(since, until]``, with their shop's region and
    slip's cluster: built once with bound parameters (building it cost as much as running
    it)."""
    conds = [col(Leg.selection_key) == bindparam("key")]
    if match_event:
        conds.append(func.lower(Leg.event) == bindparam("event"))
    # the selection's pivot (its first leg) and each bet's slip come along: a finding's
    # pivot and evidence then need no statements of their own
    first_leg = select(func.min(Leg.id)).where(*conds).scalar_subquery()
    return (
        select(Bet.id, Bet.placed_at, Bet.customer_id, Bet.shop_id, Shop.region,  # type: ignore[call-overload,misc]
               ClusterMember.cluster_id, Slip.id, first_leg)
        .join(Shop, col(Shop.id) == col(Bet.shop_id), isouter=True)
        .join(Slip, col(Slip.bet_id) == col(Bet.id), isouter=True)
        .join(ClusterMember,
              (col(ClusterMember.slip_id) == col(Slip.id))
              & (col(ClusterMember.model_version) == bindparam("version")),
              isouter=True)
        .where(col(Bet.id).in_(select(Leg.bet_id).where(*conds)),
               col(Bet.placed_at) > bindparam("since"), col(Bet.placed_at) <= bindparam("until"),
               pc.NOT_VOID)
        .order_by(col(Bet.placed_at), col(Bet.id))
    )  # fmt: skip


class SelectionRun:
    name = "selection_run"
    defaults = DEFAULTS
    triggers = frozenset({"bet_placed"})

    def evaluate(self, *, session: Session, rule: Rule, trigger: Trigger) -> list[Finding]:
        p = pc.params_of(rule, DEFAULTS)
        bet = pc.trigger_bet(session, trigger)
        if bet is None or bet.status == "void":
            return []
        anchor = pc.utc(bet.placed_at)
        legs = pc.bet_legs(session, bet.id)  # type: ignore[arg-type]
        seen: set[tuple[str, str]] = set()
        findings = []
        for leg in legs:
            ident = (leg.event.strip().lower() if p["match_event"] else "", leg.selection_key)
            if ident in seen:
                continue
            seen.add(ident)
            finding = self._one(session, p, bet, leg, anchor)
            if finding is not None:
                findings.append(finding)
        return findings

    def _one(self, session: Session, p: dict[str, Any], bet: Bet, leg: Leg,
             anchor: datetime) -> Finding | None:  # fmt: skip
        conds = selection_filter(leg.event, leg.selection_key, match_event=bool(p["match_event"]))
        figures: dict[str, float | int | str] = {
            "selection": leg.selection,
            "event": leg.event,
        }
        ratios: list[tuple[str, float]] = []
        evidence_ids: list[int] = []
        lookback = anchor - timedelta(hours=float(p["share_lookback_hours"]))
        burst_from = anchor - timedelta(minutes=float(p["burst_minutes"]))
        # every bet on the selection in the longer window, in one query (selection_key index)
        params = {"key": leg.selection_key, "version": context.model_version(session),
                  "since": min(lookback, burst_from), "until": anchor}  # fmt: skip
        if p["match_event"]:
            params["event"] = leg.event.strip().lower()
        read = context.core_rows(session, _on_selection(bool(p["match_event"])), params)
        on_selection = [tuple(r[:6]) for r in read]
        # bet -> (customer, shop, slip, cluster), for the evidence
        known = {int(r[0]): (r[2], r[3], r[6], r[5]) for r in read}
        region = None
        if bet.shop_id is not None:
            region = next((r for b, _, _, _, r, _ in on_selection if b == bet.id), None)
        for scope in SCOPES:
            x, y = int(p[f"{scope}_min_bets"]), int(p[f"{scope}_last_bets"])
            if scope == "shop":
                where = col(Bet.shop_id) == bet.shop_id if bet.shop_id is not None else None
                mine = [b for b, t, _, sh, _, _ in on_selection
                        if sh == bet.shop_id and pc.utc(t) > lookback]  # fmt: skip
            elif scope == "region":
                where = (
                    col(Bet.shop_id).in_(select(Shop.id).where(Shop.region == region))
                    if region is not None
                    else None
                )
                mine = [b for b, t, _, _, r, _ in on_selection
                        if region is not None and r == region and pc.utc(t) > lookback]  # fmt: skip
            else:
                where = true()
                mine = [b for b, t, _, _, _, _ in on_selection if pc.utc(t) > lookback]
            hits: list[int] = sorted(int(b) for b in mine)
            # the last-y query runs only when the selection's bets in the scope could reach x;
            # below x the figure is those bets of the lookback (an upper bound of the share)
            if where is not None and y > 0 and len(hits) >= x:
                last = (
                    select(Bet.id)
                    .where(where, col(Bet.placed_at) > lookback, col(Bet.placed_at) <= anchor,
                           pc.NOT_VOID)
                    .order_by(col(Bet.placed_at).desc(), col(Bet.id).desc())
                    .limit(y)
                    .subquery()
                )  # fmt: skip
                hits = sorted(
                    int(b)
                    for b in session.exec(
                        select(Leg.bet_id).where(col(Leg.bet_id).in_(select(last.c.id)), *conds)
                        .distinct()
                    ).all()
                )  # fmt: skip
            figures[f"{scope}_share_bets"] = len(hits)
            figures[f"{scope}_min_bets"] = x
            figures[f"{scope}_last_bets"] = y
            r = pc.ratio(len(hits), x)
            ratios.append((f"{scope} share", r))
            if r >= 1.0:
                evidence_ids.extend(hits)
        rows = [(b, c, sh, cl) for b, t, c, sh, _, cl in on_selection if pc.utc(t) >= burst_from]
        punters = set()
        for _, customer_id, _, cluster_id in rows:
            if customer_id is not None:
                punters.add(("customer", int(customer_id)))
            elif cluster_id is not None:
                punters.add(("cluster", int(cluster_id)))
        shops = {int(s) for _, _, s, _ in rows if s is not None}
        figures |= {
            "burst_pivots": len(punters),
            "burst_min_pivots": int(p["burst_min_pivots"]),
            "burst_shops": len(shops),
            "burst_min_shops": int(p["burst_min_shops"]),
            "burst_minutes": p["burst_minutes"],
        }
        ratios.append(("punters in minutes", pc.ratio(len(punters), int(p["burst_min_pivots"]))))
        ratios.append(("shops in minutes", pc.ratio(len(shops), int(p["burst_min_shops"]))))
        value = max(r for _, r in ratios)
        if value < 1.0:
            return None
        if ratios[-1][1] >= 1.0 or ratios[-2][1] >= 1.0:
            evidence_ids = [int(b) for b, _, _, _ in rows] + evidence_ids
        figures["crossed"] = pc.crossed((name, r >= 1.0) for name, r in ratios)
        cap = int(p["max_evidence"])
        evidence = pc.evidence_from(evidence_ids, known, cap=cap)
        if evidence is None:  # a bet outside the first read (committed in between)
            evidence, _ = pc.evidence_of(session, evidence_ids, cap=cap)
        return Finding(
            pivot_kind="selection",
            pivot_id=int(read[0][7]) if read else selection_pivot(session, conds),
            value=round(value, 4),
            figures=figures,
            evidence=evidence,
            window_start=min(lookback, burst_from),
            window_end=anchor,
        )


KIND = SelectionRun()
