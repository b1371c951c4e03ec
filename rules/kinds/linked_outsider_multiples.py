"""Rule 14: linked outsider multiples, the same long-odds multiple on several tickets.

Two or more tickets carrying exactly the same set of at least 3 selections, each at decimal
odds of 5.0 or more, placed within the rule's window (default 24 hours) up to the triggering
bet: staking one "inside" multiple across tickets, shops or accounts to stay under stake
limits and liability checks, a pattern in published race-fixing and bookmaker-integrity cases.
The tickets may be any bet type over those selections (an accumulator, a trixie or a yankee);
a leg at SP has no price and never qualifies. ``value`` is the number of tickets. Findings
pivot on the group: ``pivot_kind="bet"``, ``pivot_id`` = the first ticket's bet id.
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
        "min_selections": 3,
        "min_odds": 5.0,  # every leg at this decimal price or longer
        "min_tickets": 2,
        "match_event": True,
        "max_evidence": 200,
    }
)
DEFAULT_WINDOW = timedelta(hours=24)


class LinkedOutsiderMultiples:
    name = "linked_outsider_multiples"
    defaults = DEFAULTS
    triggers = frozenset({"bet_placed"})

    def evaluate(self, *, session: Session, rule: Rule, trigger: Trigger) -> list[Finding]:
        p = pc.params_of(rule, DEFAULTS)
        window = pc.window_of(rule, DEFAULT_WINDOW)
        bet = pc.trigger_bet(session, trigger)
        if bet is None or bet.status == "void":
            return []
        min_odds, match_event = float(p["min_odds"]), bool(p["match_event"])
        legs = pc.bet_legs(session, bet.id)  # type: ignore[arg-type]

        def ident(event: str, key: str) -> tuple[str, str]:
            return (event.strip().lower() if match_event else "", key)

        wanted = {ident(leg.event, leg.selection_key) for leg in legs}
        if len(wanted) < int(p["min_selections"]) or len(wanted) != len(legs):
            return []
        if any(leg.odds is None or leg.odds < min_odds for leg in legs):
            return []
        anchor = pc.utc(bet.placed_at)
        keys = sorted({k for _, k in wanted})
        # candidate tickets: a leg on one of the selections, placed in the window, as many
        # matching legs as the bet has selections; then their legs are compared exactly
        candidates = session.exec(
            select(Leg.bet_id)
            .join(Bet, col(Bet.id) == col(Leg.bet_id))
            .where(
                col(Leg.selection_key).in_(keys),
                col(Bet.placed_at) > anchor - window,
                col(Bet.placed_at) <= anchor,
                pc.NOT_VOID,
            )
            .group_by(col(Leg.bet_id))
            .having(func.count(col(Leg.id)) >= len(wanted))
        ).all()
        legs_of: dict[int, list[tuple[str, str, float | None]]] = defaultdict(list)
        for bet_id, event, key, odds in session.exec(
            select(Leg.bet_id, Leg.event, Leg.selection_key, Leg.odds).where(
                col(Leg.bet_id).in_([int(c) for c in candidates])
            )
        ).all():
            legs_of[int(bet_id)].append((event, key, odds))
        tickets = sorted(
            b
            for b, ls in legs_of.items()
            if len(ls) == len(wanted)
            and {ident(e, k) for e, k, _ in ls} == wanted
            and all(o is not None and o >= min_odds for _, _, o in ls)
        )
        if len(tickets) < int(p["min_tickets"]) or bet.id not in tickets:
            return []
        evidence, _ = pc.evidence_of(session, tickets, cap=int(p["max_evidence"]))
        stakes = session.exec(
            select(func.sum(Bet.total_stake), func.min(Bet.placed_at)).where(
                col(Bet.id).in_(tickets)
            )
        ).one()
        names = sorted(leg.selection for leg in legs)
        return [
            Finding(
                pivot_kind="bet",
                pivot_id=tickets[0],
                value=float(len(tickets)),
                figures={
                    "tickets": len(tickets),
                    "min_tickets": int(p["min_tickets"]),
                    "selections": len(wanted),
                    "min_selections": int(p["min_selections"]),
                    "shortest_odds": min(float(leg.odds) for leg in legs if leg.odds),
                    "min_odds": min_odds,
                    "selection_names": ", ".join(names),
                    "customers": len(evidence.get("customers", [])),
                    "shops": len(evidence.get("shops", [])),
                    "total_stake_gbp": pc.money(stakes[0]),
                    "window_hours": round(window / timedelta(hours=1), 3),
                },
                evidence=evidence,
                window_start=pc.utc(stakes[1]),
                window_end=anchor,
            )
        ]


KIND = LinkedOutsiderMultiples()
