"""Rule 7: low-risk washing, staking a lot for little expected loss.

Backing heavy favourites, or covering both sides of a market, turns cash into "winnings" at a
small cost: a money-laundering typology in UK Gambling Commission AML guidance and enforcement
cases. Over the rule's window (default 7 days) ending at the trigger, the pivot's non-void
bets must total at least GBP 2,000 and either have a median price of 1.30 or shorter (decimal
odds; SP bets have no price and are left out of the median), or cover both sides: at least
half of the stake sits on single bets on a market (event + market) where the pivot backed two
or more selections. The net loss on the settled bets must stay under 3% of their stakes, with
at least half of the stake settled. ``value`` is the GBP staked.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from types import MappingProxyType

from sqlalchemy import func
from sqlmodel import Session, col, select

from rules.kinds import _pattern_common as pc
from rules.types import Finding, Rule, Trigger
from store.models import Bet, Leg

DEFAULTS = MappingProxyType(
    {
        "min_staked_gbp": 2_000.0,
        "max_median_odds": 1.30,
        "min_covered_share": 0.5,  # share of the stake on markets backed on 2+ selections
        "max_loss_rate": 0.03,  # net loss / settled stakes must stay below it
        "min_settled_share": 0.5,  # a loss rate on less of the stake says too little
        "fx_to_gbp": {"GBP": 1.0},
        "max_evidence": 200,
    }
)
DEFAULT_WINDOW = timedelta(days=7)


class LowRiskWashing:
    name = "low_risk_washing"
    defaults = DEFAULTS
    triggers = frozenset({"bet_settled", "schedule"})

    def evaluate(self, *, session: Session, rule: Rule, trigger: Trigger) -> list[Finding]:
        p = pc.params_of(rule, DEFAULTS)
        window = pc.window_of(rule, DEFAULT_WINDOW)
        at = pc.utc(trigger.at)
        having = func.sum(Bet.total_stake).filter(pc.NOT_VOID) >= float(p["min_staked_gbp"])
        findings = []
        for kind, pid, anchor, _bet in pc.pivots_to_evaluate(
            session, trigger, since=at - window, until=at, having=having
        ):
            finding = self._one(session, p, kind, pid, anchor, window)
            if finding is not None:
                findings.append(finding)
        return findings

    def _one(self, session, p, kind, pid, anchor, window):  # type: ignore[no-untyped-def]
        since = anchor - window
        sums = pc.pivot_sums(session, kind, pid, since=since, until=anchor,
                             fx_to_gbp=p["fx_to_gbp"])  # fmt: skip
        staked = sums["staked"]
        if staked < float(p["min_staked_gbp"]) or staked <= 0:
            return None
        settled_share = sums["settled_staked"] / staked
        loss_rate = sums["net_loss"] / sums["settled_staked"] if sums["settled_staked"] else 0.0
        if settled_share < float(p["min_settled_share"]) or loss_rate >= float(p["max_loss_rate"]):
            return None
        # prices and markets: one row per leg of the window's non-void bets
        rows = session.exec(
            select(Bet.id, Bet.total_stake, Bet.odds, Bet.currency, Leg.event, Leg.market,
                   Leg.selection_key, func.count(Leg.id).over(partition_by=Leg.bet_id))
            .join(Leg, col(Leg.bet_id) == col(Bet.id))
            .where(pc.pivot_ids_clause(session, kind, pid, since=since, until=anchor),
                   pc.NOT_VOID)
        ).all()  # fmt: skip
        rates = {str(k).upper(): float(v) for k, v in p["fx_to_gbp"].items()}
        odds: dict[int, float] = {}
        stake_of: dict[int, float] = {}
        markets: dict[tuple[str, str], set[str]] = defaultdict(set)
        singles: dict[tuple[str, str], list[int]] = defaultdict(list)
        for bet_id, stake, price, currency, event, market, sel, n_legs in rows:
            stake_of[bet_id] = float(stake) * rates.get(str(currency).upper(), 1.0)
            if price is not None:
                odds[bet_id] = float(price)
            if n_legs == 1:
                key = (event.strip().lower(), market.strip().lower())
                markets[key].add(sel)
                singles[key].append(bet_id)
        median_odds = pc.median(list(odds.values())) if odds else None
        covered = sorted(b for k, ids in singles.items() if len(markets[k]) >= 2 for b in ids)
        covered_share = sum(stake_of[b] for b in covered) / staked
        short = median_odds is not None and median_odds <= float(p["max_median_odds"])
        both_sides = covered_share >= float(p["min_covered_share"])
        if not (short or both_sides):
            return None
        cap = int(p["max_evidence"])
        ids = covered if both_sides and not short else sorted(stake_of)
        evidence, confidence = pc.evidence_of(session, ids, pivot_kind=kind, pivot_id=pid, cap=cap)
        return Finding(
            pivot_kind=kind,
            pivot_id=pid,
            value=staked,
            figures={
                "staked_gbp": staked,
                "min_staked_gbp": float(p["min_staked_gbp"]),
                "median_odds": round(median_odds, 4) if median_odds is not None else "n/a",
                "max_median_odds": float(p["max_median_odds"]),
                "covered_share": round(covered_share, 4),
                "min_covered_share": float(p["min_covered_share"]),
                "net_loss_gbp": sums["net_loss"],
                "settled_staked_gbp": sums["settled_staked"],
                "loss_rate": round(loss_rate, 4),
                "max_loss_rate": float(p["max_loss_rate"]),
                "window_days": round(window / timedelta(days=1), 3),
                "crossed": pc.crossed(
                    [("short prices", short), ("both sides of a market covered", both_sides)]
                ),
            },
            evidence=evidence,
            window_start=since,
            window_end=anchor,
            link_confidence=confidence,
        )


KIND = LowRiskWashing()
