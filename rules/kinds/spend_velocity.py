"""Rule 9: spend velocity, a fast rise in the money staked.

UK Gambling Commission customer-interaction guidance names "spend velocity" as an indicator of
harm. Defaults: GBP 10,000 or more staked (non-void bets, GBP) over the rule's window of 14
days; the bands grade it (GBP 10,000 medium, GBP 20,000 high). ``value`` is the GBP staked.
"""

from __future__ import annotations

from datetime import timedelta
from types import MappingProxyType

from sqlalchemy import func
from sqlmodel import Session

from rules.kinds import _pattern_common as pc
from rules.types import Finding, Rule, Trigger
from store.models import Bet

DEFAULTS = MappingProxyType(
    {
        "min_staked_gbp": 10_000.0,  # no finding below it (the lowest band should agree)
        "fx_to_gbp": {"GBP": 1.0},
        "max_evidence": 200,
    }
)
DEFAULT_WINDOW = timedelta(days=14)


class SpendVelocity:
    name = "spend_velocity"
    defaults = DEFAULTS
    triggers = frozenset({"bet_placed", "slip_clustered", "schedule"})
    # the bets behind its pivots: a join changes them unless a customer's own cluster grew
    # by the customer's slip (`rules.engine.join_changes`)
    join_reads = frozenset({"accounts", "anonymous"})

    def evaluate(self, *, session: Session, rule: Rule, trigger: Trigger) -> list[Finding]:
        p = pc.params_of(rule, DEFAULTS)
        window = pc.window_of(rule, DEFAULT_WINDOW)
        threshold = float(p["min_staked_gbp"])
        at = pc.utc(trigger.at)
        having = None  # the screening's pre-filter, built for a screening only
        if trigger.kind == "schedule":
            having = func.sum(Bet.total_stake).filter(pc.NOT_VOID) >= threshold
        findings = []
        for kind, pid, anchor, _bet in pc.pivots_to_evaluate(
            session, trigger, since=at - window, until=at, having=having
        ):
            sums = pc.pivot_sums(session, kind, pid, since=anchor - window, until=anchor,
                                 fx_to_gbp=p["fx_to_gbp"])  # fmt: skip
            if sums["staked"] < threshold:
                continue
            cap = int(p["max_evidence"])
            bets = pc.pivot_bet_ids(session, kind, pid, since=anchor - window, until=anchor,
                                    limit=cap)  # fmt: skip
            evidence, confidence = pc.evidence_of(session, bets, pivot_kind=kind, pivot_id=pid,
                                                  cap=cap)  # fmt: skip
            findings.append(
                Finding(
                    pivot_kind=kind,
                    pivot_id=pid,
                    value=sums["staked"],
                    figures={
                        "staked_gbp": sums["staked"],
                        "min_staked_gbp": threshold,
                        "bets": sums["bets"],
                        "window_days": round(window / timedelta(days=1), 3),
                    },
                    evidence=evidence,
                    window_start=anchor - window,
                    window_end=anchor,
                    link_confidence=confidence,
                )
            )
        return findings


KIND = SpendVelocity()
