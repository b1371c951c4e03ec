"""Rule 11: chasing losses, raising the stake straight after a run of losses.

"Chasing losses" is a core UK Gambling Commission marker of harm. A *chase* is a bet placed
right after at least 3 consecutive losing bets (in placement order; void bets are skipped, any
other result breaks the run) whose results were known when it was placed (settled before it),
with a total stake of at least 2 times the mean stake of that run. Defaults: 2 or more chases
placed within the rule's window (1 day) ending at the triggering bet. ``value`` is the number
of chases.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from sqlmodel import Session

from rules.kinds import _pattern_common as pc
from rules.types import Finding, Rule, Trigger
from store.models import BetStatus

DEFAULTS = MappingProxyType(
    {
        "min_losses": 3,  # consecutive losing bets before the chase
        "stake_multiple": 2.0,  # chase stake >= this x the mean stake of the losing run
        "min_chases": 2,  # chases within the window
        "lookback_hours": 24,  # bets before the window that may start a losing run
    }
)
DEFAULT_WINDOW = timedelta(days=1)


class ChasingLosses:
    name = "chasing_losses"
    defaults = DEFAULTS
    triggers = frozenset({"bet_placed", "bet_settled"})

    def lookback(self, rule: Rule) -> timedelta:
        p = pc.params_of(rule, DEFAULTS)
        return pc.window_of(rule, DEFAULT_WINDOW) + timedelta(hours=float(p["lookback_hours"]))

    def evaluate(self, *, session: Session, rule: Rule, trigger: Trigger) -> list[Finding]:
        p = pc.params_of(rule, DEFAULTS)
        window = pc.window_of(rule, DEFAULT_WINDOW)
        found = pc.event_pivot(session, trigger)
        if found is None:
            return []
        kind, pid, anchor, _bet = found
        start = anchor - window
        rows = pc.pivot_rows(session, kind, pid, until=anchor,
                             since=start - timedelta(hours=float(p["lookback_hours"])))  # fmt: skip
        chases = find_chases(
            [(r.bet_id, r.placed_at, r.stake, r.status, r.settled_at) for r in rows],
            min_losses=int(p["min_losses"]),
            stake_multiple=float(p["stake_multiple"]),
            since=start,
        )  # fmt: skip
        if len(chases) < int(p["min_chases"]):
            return []
        ids: list[int] = []
        for chase in chases:
            ids.extend([chase["bet_id"], *chase["losses"]])
        evidence, confidence = pc.evidence_of(session, ids, pivot_kind=kind, pivot_id=pid,
                                              cap=len(ids))  # fmt: skip
        first = chases[0]
        return [
            Finding(
                pivot_kind=kind,
                pivot_id=pid,
                value=float(len(chases)),
                figures={
                    "chases": len(chases),
                    "chase_bets": ", ".join(str(c["bet_id"]) for c in chases),
                    "min_chases": int(p["min_chases"]),
                    "min_losses": int(p["min_losses"]),
                    "stake_multiple": float(p["stake_multiple"]),
                    "largest_multiple": max(c["multiple"] for c in chases),
                    "first_chase_stake_gbp": first["stake"],
                    "first_chase_losses": len(first["losses"]),
                    "first_chase_mean_loss_stake_gbp": first["mean_loss_stake"],
                    "window_hours": round(window / timedelta(hours=1), 3),
                },
                evidence=evidence,
                window_start=start,
                window_end=anchor,
                link_confidence=confidence,
            )
        ]


def find_chases(
    bets: list[tuple[int, datetime, float, str, datetime | None]],
    *,
    min_losses: int,
    stake_multiple: float,
    since: datetime,
) -> list[dict[str, Any]]:
    """Chases among ``bets`` (id, placed_at, total stake, status, settled_at; in placement
    order) placed after ``since``: each with its bet id, stake, the losing run's bet ids, their
    mean stake and the stake multiple."""
    chases: list[dict[str, Any]] = []
    run: list[tuple[int, datetime, float, str, datetime | None]] = []
    for bet in bets:
        bet_id, placed_at, stake, status, _ = bet
        # the run as the punter knew it: losses settled before this bet was placed
        known = [b for b in run if b[4] is not None and b[4] <= placed_at]
        if len(known) == len(run) and len(run) >= min_losses and placed_at > since:
            mean = sum(b[2] for b in run) / len(run)
            if stake >= stake_multiple * mean:
                chases.append({
                    "bet_id": bet_id, "stake": pc.money(stake),
                    "losses": [b[0] for b in run], "mean_loss_stake": pc.money(mean),
                    "multiple": round(stake / mean, 4),
                })  # fmt: skip
        if status == BetStatus.void:
            continue
        if status == BetStatus.lost:
            run.append(bet)
        else:
            run = []
    return chases


KIND = ChasingLosses()
