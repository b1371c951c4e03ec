"""Rule 15: liability or a single bet's potential win over the operator's limit.

Two checks on a newly placed bet:

* liability per selection: the potential payout of every open bet with a leg on the selection
  minus those bets' stakes, over ``max_liability_gbp``. A multiple's whole payout counts on each
  of its selections (any one leg can still leave the operator facing it, as in
  ``store.exposure``); bets without a known payout (SP, each-way) cannot be priced and are
  counted apart (``unpriced_bets``). Pivot: the selection (``pivot_kind="selection"``,
  ``pivot_id`` = first leg ever stored on it, see `rules.kinds.selection_run`).
* maximum win: the bet's potential payout (stake included, as shop "maximum payout" rules are
  written) over ``max_win_gbp``. Pivot: the bet's customer or handwriting cluster, else the bet.

``value`` is liability / limit or payout / limit.
"""

from __future__ import annotations

from types import MappingProxyType

from sqlalchemy import func
from sqlmodel import Session, col, select

from rules.kinds import _pattern_common as pc
from rules.kinds.selection_run import selection_filter, selection_pivot
from rules.types import Finding, Rule, Trigger
from store.models import Bet, BetStatus, Leg

DEFAULTS = MappingProxyType(
    {
        "max_liability_gbp": 50_000.0,  # per selection, net of the stakes of its open bets
        "max_win_gbp": 250_000.0,  # potential payout of one bet, stake included
        "match_event": True,
        "max_evidence": 100,  # open bets listed, largest payout first
    }
)


class LiabilityLimit:
    name = "liability_limit"
    defaults = DEFAULTS
    triggers = frozenset({"bet_placed"})

    def evaluate(self, *, session: Session, rule: Rule, trigger: Trigger) -> list[Finding]:
        p = pc.params_of(rule, DEFAULTS)
        bet = pc.trigger_bet(session, trigger)
        if bet is None or bet.status != BetStatus.open:
            return []
        anchor = pc.utc(bet.placed_at)
        findings: list[Finding] = []
        limit = float(p["max_liability_gbp"])
        seen: set[tuple[str, str]] = set()
        legs = pc.bet_legs(session, bet.id)  # type: ignore[arg-type]
        for leg in legs:
            ident = (leg.event.strip().lower() if p["match_event"] else "", leg.selection_key)
            if ident in seen:
                continue
            seen.add(ident)
            conds = selection_filter(
                leg.event, leg.selection_key, match_event=bool(p["match_event"])
            )
            on_selection = col(Bet.id).in_(select(Leg.bet_id).where(*conds))
            priced = col(Bet.potential_return).is_not(None)
            liability, n_priced, n_unpriced, stakes, oldest = session.exec(
                select(  # type: ignore[call-overload]
                    func.sum(col(Bet.potential_return) - col(Bet.total_stake)).filter(priced),
                    func.count(col(Bet.id)).filter(priced),
                    func.count(col(Bet.id)).filter(col(Bet.potential_return).is_(None)),
                    func.sum(Bet.total_stake),
                    func.min(Bet.placed_at),
                ).where(on_selection, Bet.status == BetStatus.open)
            ).one()
            liability = pc.money(liability)
            if pc.ratio(liability, limit) < 1.0:
                continue
            top = session.exec(
                select(Bet.id)
                .where(on_selection, Bet.status == BetStatus.open, priced)
                .order_by(col(Bet.potential_return).desc(), col(Bet.id))
                .limit(int(p["max_evidence"]))
            ).all()
            ids = [int(bet.id or 0), *(int(t) for t in top if t is not None)]
            evidence, _ = pc.evidence_of(session, ids, cap=int(p["max_evidence"]) + 1)
            findings.append(
                Finding(
                    pivot_kind="selection",
                    pivot_id=selection_pivot(session, conds),
                    value=round(pc.ratio(liability, limit), 4),
                    figures={
                        "check": "open liability",
                        "selection": leg.selection,
                        "amount_gbp": liability,
                        "limit_gbp": limit,
                        "event": leg.event,
                        "liability_gbp": liability,
                        "max_liability_gbp": limit,
                        "open_bets": int(n_priced or 0),
                        "unpriced_bets": int(n_unpriced or 0),
                        "open_stakes_gbp": pc.money(stakes),
                    },
                    evidence=evidence,
                    # the liability builds up from the oldest open bet: while it stays open,
                    # later findings on the selection add to the same alert
                    window_start=min(pc.utc(oldest), anchor) if oldest is not None else anchor,
                    window_end=anchor,
                )
            )
        max_win = float(p["max_win_gbp"])
        payout = pc.money(bet.potential_return)
        if bet.potential_return is not None and pc.ratio(payout, max_win) >= 1.0:
            pivot = pc.pivot_of_bet(session, bet) or ("bet", int(bet.id))  # type: ignore[arg-type]
            evidence, _ = pc.evidence_of(session, [bet.id], cap=1)  # type: ignore[list-item]
            findings.append(
                Finding(
                    pivot_kind=pivot[0],
                    pivot_id=pivot[1],
                    value=round(pc.ratio(payout, max_win), 4),
                    figures={
                        "check": "potential payout",
                        "selection": ", ".join(leg.selection for leg in legs),
                        "amount_gbp": payout,
                        "limit_gbp": max_win,
                        "potential_return_gbp": payout,
                        "max_win_gbp": max_win,
                        "stake_gbp": pc.money(bet.total_stake),
                    },
                    evidence=evidence,
                    window_start=anchor,
                    window_end=anchor,
                )
            )
        return findings


KIND = LiabilityLimit()
