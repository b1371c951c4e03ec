"""Rule 10: session intensity, many bets or a heavy loss in one session.

UK Gambling Commission customer-interaction guidance lists time spent and the frequency of
play and losses within a session as harm indicators. A session is the rule's window (default
4 hours) ending at the triggering bet; for a settled bet it ends at the last bet the pivot
placed within one window after it, so the session loss counts the bets that settled later.
Defaults: 40 or more (non-void) bets, or a net loss of GBP 2,000 or more on the session's
settled bets. ``value`` is the larger of bets / 40 and loss / 2,000.
"""

from __future__ import annotations

from datetime import timedelta
from types import MappingProxyType

from sqlmodel import Session

from rules.kinds import _pattern_common as pc
from rules.types import Finding, Rule, Trigger

DEFAULTS = MappingProxyType(
    {
        "min_bets": 40,
        "min_session_loss_gbp": 2_000.0,
        "fx_to_gbp": {"GBP": 1.0},
        "max_evidence": 200,
    }
)
DEFAULT_WINDOW = timedelta(hours=4)


class SessionIntensity:
    name = "session_intensity"
    defaults = DEFAULTS
    triggers = frozenset({"bet_placed", "bet_settled"})

    def evaluate(self, *, session: Session, rule: Rule, trigger: Trigger) -> list[Finding]:
        p = pc.params_of(rule, DEFAULTS)
        window = pc.window_of(rule, DEFAULT_WINDOW)
        found = pc.event_pivot(session, trigger)
        if found is None:
            return []
        kind, pid, anchor, bet = found
        if trigger.kind == "bet_settled" and bet is not None:
            # the session the settled bet belongs to: up to the last bet placed in the window
            # after it (including itself, hence the read from just before it)
            later = pc.pivot_rows(session, kind, pid, since=anchor - timedelta(microseconds=1),
                                  until=anchor + window)  # fmt: skip
            anchor = max((r.placed_at for r in later), default=anchor)
        sums = pc.pivot_sums(session, kind, pid, since=anchor - window, until=anchor,
                             fx_to_gbp=p["fx_to_gbp"])  # fmt: skip
        min_bets, min_loss = int(p["min_bets"]), float(p["min_session_loss_gbp"])
        bets_ratio = pc.ratio(sums["bets"], min_bets)
        loss_ratio = pc.ratio(sums["net_loss"], min_loss)
        value = max(bets_ratio, loss_ratio)
        if value < 1.0:
            return []
        cap = int(p["max_evidence"])
        ids = pc.pivot_bet_ids(session, kind, pid, since=anchor - window, until=anchor, limit=cap)
        evidence, confidence = pc.evidence_of(session, ids, pivot_kind=kind, pivot_id=pid, cap=cap)
        return [
            Finding(
                pivot_kind=kind,
                pivot_id=pid,
                value=round(value, 4),
                figures={
                    "session_bets": sums["bets"],
                    "min_bets": min_bets,
                    "session_loss_gbp": sums["net_loss"],
                    "min_session_loss_gbp": min_loss,
                    "session_staked_gbp": sums["staked"],
                    "session_hours": round(window / timedelta(hours=1), 3),
                    "crossed": pc.crossed(
                        [("bet count", bets_ratio >= 1.0), ("session loss", loss_ratio >= 1.0)]
                    ),
                },
                evidence=evidence,
                window_start=anchor - window,
                window_end=anchor,
                link_confidence=confidence,
            )
        ]


KIND = SessionIntensity()
