"""Rule 6: high spend without a source-of-funds check.

UK Gambling Commission customer-interaction and AML guidance expects source-of-funds checks
once spend is material; enforcement cases cite customers staking tens of thousands or losing
thousands within weeks unchecked. Defaults: stakes >= GBP 10,000 in 30 days, or a net loss
>= GBP 5,000 in 90 days, for a pivot (customer, or the handwriting cluster of anonymous bets)
whose customer record does not carry a verified risk category.

``value`` is the larger of staked / stake threshold and net loss / loss threshold, so the
bands read in multiples of the threshold (1.0 = just crossed).
"""

from __future__ import annotations

from datetime import timedelta
from types import MappingProxyType

from sqlalchemy import func, or_
from sqlmodel import Session, col

from rules.kinds import _pattern_common as pc
from rules.types import Finding, Rule, Trigger
from store.models import Bet

DEFAULTS = MappingProxyType(
    {
        "stake_threshold_gbp": 10_000.0,
        "stake_window_days": 30,
        "loss_threshold_gbp": 5_000.0,
        "loss_window_days": 90,
        # customers whose source of funds has been verified (Customer.risk_category)
        "exempt_risk_categories": ["sof_verified"],
        "fx_to_gbp": {"GBP": 1.0},
        "max_evidence": 200,
    }
)


class HighSpend:
    name = "high_spend"
    defaults = DEFAULTS
    triggers = frozenset({"bet_placed", "bet_settled", "slip_clustered", "schedule"})
    # the bets behind its pivots: a join changes them unless a customer's own cluster grew
    # by the customer's slip (`rules.engine.join_changes`)
    join_reads = frozenset({"accounts", "anonymous"})

    def lookback(self, rule: Rule) -> timedelta:
        p = pc.params_of(rule, DEFAULTS)
        return timedelta(days=max(float(p["stake_window_days"]), float(p["loss_window_days"])))

    def evaluate(self, *, session: Session, rule: Rule, trigger: Trigger) -> list[Finding]:
        p = pc.params_of(rule, DEFAULTS)
        stake_thr, loss_thr = float(p["stake_threshold_gbp"]), float(p["loss_threshold_gbp"])
        stake_win = timedelta(days=float(p["stake_window_days"]))
        loss_win = timedelta(days=float(p["loss_window_days"]))
        at = pc.utc(trigger.at)
        # schedule pre-filter over a customer's own bets (exact when unlinked); the longer
        # window is a superset, so a stake total over it is a safe lower bar.
        longest = max(stake_win, loss_win)
        having = None  # built for a screening only (building it costs an event run ~0.1 ms)
        if trigger.kind == "schedule":
            settled = col(Bet.status).in_(pc.SETTLED)
            having = or_(
                func.sum(Bet.total_stake).filter(pc.NOT_VOID) >= stake_thr,
                func.sum(Bet.total_stake - func.coalesce(Bet.returns, 0)).filter(settled)
                >= loss_thr,
            )
        findings = []
        for kind, pid, anchor, _bet in pc.pivots_to_evaluate(
            session, trigger, since=at - longest, until=at, having=having
        ):
            finding = self._one(session, p, kind, pid, anchor, stake_win, loss_win)
            if finding is not None and finding.value >= 1.0:
                findings.append(finding)
        return findings

    def _one(self, session, p, kind, pid, anchor, stake_win, loss_win):  # type: ignore[no-untyped-def]
        stakes, losses = pc.pivot_sums_since(session, kind, pid, until=anchor,
                                             sinces=[anchor - stake_win, anchor - loss_win],
                                             fx_to_gbp=p["fx_to_gbp"])  # fmt: skip
        stake_thr, loss_thr = float(p["stake_threshold_gbp"]), float(p["loss_threshold_gbp"])
        stake_ratio = pc.ratio(stakes["staked"], stake_thr)
        loss_ratio = pc.ratio(losses["net_loss"], loss_thr)
        value = max(stake_ratio, loss_ratio)
        if value < 1.0:
            return None
        if kind == "customer":  # looked up only once over a threshold: most bets never are
            category = pc.customer_risk_category(session, pid)
            if category is not None and category in p["exempt_risk_categories"]:
                return None
        start = anchor - max(stake_win, loss_win)
        bets = pc.pivot_bet_ids(session, kind, pid, since=start, until=anchor,
                                limit=int(p["max_evidence"]))  # fmt: skip
        evidence, confidence = pc.evidence_of(session, bets, pivot_kind=kind, pivot_id=pid,
                                              cap=int(p["max_evidence"]))  # fmt: skip
        return Finding(
            pivot_kind=kind,
            pivot_id=pid,
            value=round(value, 4),
            figures={
                "staked_gbp": stakes["staked"],
                "stake_threshold_gbp": stake_thr,
                "stake_window_days": p["stake_window_days"],
                "net_loss_gbp": losses["net_loss"],
                "loss_threshold_gbp": loss_thr,
                "loss_window_days": p["loss_window_days"],
                "stake_ratio": round(stake_ratio, 4),
                "loss_ratio": round(loss_ratio, 4),
                "crossed": pc.crossed(
                    [("stakes", stake_ratio >= 1.0), ("net loss", loss_ratio >= 1.0)]
                ),
            },
            evidence=evidence,
            window_start=start,
            window_end=anchor,
            link_confidence=confidence,
        )


KIND = HighSpend()
