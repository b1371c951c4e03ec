"""Rule 8: stake spike, one stake far above the pivot's usual stake.

A sudden jump in stake size is a UK Gambling Commission marker of harm (and of a bet placed
for someone else). Defaults: the new bet's total stake is at least 5 times the median total
stake of the pivot's non-void bets in the previous 90 days (the rule's window), given at least
10 such prior bets; the bands grade it (5x medium, 10x high). ``value`` is the ratio.
"""

from __future__ import annotations

from datetime import timedelta
from types import MappingProxyType

from sqlmodel import Session

from rules import context
from rules.kinds import _pattern_common as pc
from rules.types import Finding, Rule, Trigger
from store.models import BetStatus

DEFAULTS = MappingProxyType(
    {
        "min_ratio": 5.0,  # no finding below it (the lowest band should agree)
        "min_prior_bets": 10,  # a median of fewer bets says little about the usual stake
        "max_evidence": 50,  # prior bets listed after the spiking bet, newest first
    }
)
DEFAULT_WINDOW = timedelta(days=90)


class StakeSpike:
    name = "stake_spike"
    defaults = DEFAULTS
    triggers = frozenset({"bet_placed"})

    def evaluate(self, *, session: Session, rule: Rule, trigger: Trigger) -> list[Finding]:
        p = pc.params_of(rule, DEFAULTS)
        window = pc.window_of(rule, DEFAULT_WINDOW)
        found = pc.event_pivot(session, trigger)
        if found is None or found[3] is None:
            return []
        kind, pid, anchor, bet = found
        if bet is None or bet.id is None or bet.status == "void":
            return []
        # the window is [anchor - window, anchor]: a bet exactly at its start still counts
        prior = [
            r
            for r in context.bet_rows_of_pivot(session=session, pivot_kind=kind, pivot_id=pid,
                                               since=anchor - window, until=anchor)
            if r.bet_id != bet.id and r.status != BetStatus.void
        ]  # fmt: skip
        prior.sort(key=lambda r: (r.placed_at, r.bet_id), reverse=True)
        rows = [(r.bet_id, r.stake) for r in prior]
        if len(rows) < int(p["min_prior_bets"]):
            return []
        baseline = pc.median([float(s) for _, s in rows])
        stake = float(bet.total_stake)
        ratio = pc.ratio(stake, baseline)
        if ratio < float(p["min_ratio"]):
            return []
        ids = [bet.id, *(int(i) for i, _ in rows[: int(p["max_evidence"])] if i is not None)]
        evidence, confidence = pc.evidence_of(session, ids, pivot_kind=kind, pivot_id=pid,
                                              cap=len(ids))  # fmt: skip
        return [
            Finding(
                pivot_kind=kind,
                pivot_id=pid,
                value=round(ratio, 4),
                figures={
                    "stake_gbp": pc.money(stake),
                    "median_stake_gbp": pc.money(baseline),
                    "ratio": round(ratio, 4),
                    "min_ratio": float(p["min_ratio"]),
                    "prior_bets": len(rows),
                    "min_prior_bets": int(p["min_prior_bets"]),
                    "baseline_days": round(window / timedelta(days=1), 3),
                },
                evidence=evidence,
                window_start=anchor - window,
                window_end=anchor,
                link_confidence=confidence,
            )
        ]


KIND = StakeSpike()
