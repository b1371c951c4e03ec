"""Rule 12: one punter (customer or handwriting cluster) betting in many shops.

Spreading bets over shops keeps each shop's view below its thresholds (structuring, a money
laundering typology in UK Gambling Commission enforcement cases) and hides a pattern of play.
Defaults: 3 or more distinct shops within 24 hours, or 5 or more within 7 days, both windows
ending at the triggering bet. ``value`` is the larger of shops-in-a-day / 3 and
shops-in-a-week / 5.
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
        "day_hours": 24,
        "min_shops_day": 3,
        "week_days": 7,
        "min_shops_week": 5,
    }
)


class MultiShop:
    name = "multi_shop"
    defaults = DEFAULTS
    triggers = frozenset({"bet_placed", "slip_clustered"})
    # the bets behind its pivots: a join changes them unless a customer's own cluster grew
    # by the customer's slip (`rules.engine.join_changes`)
    join_reads = frozenset({"accounts", "anonymous"})

    def lookback(self, rule: Rule) -> timedelta:
        p = pc.params_of(rule, DEFAULTS)
        return max(timedelta(hours=float(p["day_hours"])), timedelta(days=float(p["week_days"])))

    def evaluate(self, *, session: Session, rule: Rule, trigger: Trigger) -> list[Finding]:
        p = pc.params_of(rule, DEFAULTS)
        return [
            finding
            for kind, pid, anchor, _bet in pc.event_pivots(session, trigger)
            if (finding := self._one(session, p, kind, pid, anchor)) is not None
        ]

    def _one(
        self, session: Session, p: dict[str, Any], kind: str, pid: int, anchor: datetime
    ) -> Finding | None:
        day = timedelta(hours=float(p["day_hours"]))
        week = timedelta(days=float(p["week_days"]))
        visits = self._shops(session, kind, pid, anchor - max(day, week), anchor)
        day_shops = {s: v for s, v in visits.items() if v[1] > anchor - day}
        week_shops = {s: v for s, v in visits.items() if v[1] > anchor - week}
        day_ratio = pc.ratio(len(day_shops), int(p["min_shops_day"]))
        week_ratio = pc.ratio(len(week_shops), int(p["min_shops_week"]))
        value = max(day_ratio, week_ratio)
        if value < 1.0:
            return None
        shops = day_shops if day_ratio >= 1.0 and day_ratio >= week_ratio else week_shops
        # one bet per shop: the last one placed there
        ids = [bet_id for _, _, bet_id in sorted(shops.values())]
        evidence, confidence = pc.evidence_of(session, ids, pivot_kind=kind, pivot_id=pid,
                                              cap=len(ids))  # fmt: skip
        start = anchor - (day if shops is day_shops else week)
        return Finding(
            pivot_kind=kind,
            pivot_id=pid,
            value=round(value, 4),
            figures={
                "shops_day": len(day_shops),
                "min_shops_day": int(p["min_shops_day"]),
                "day_hours": p["day_hours"],
                "shops_week": len(week_shops),
                "min_shops_week": int(p["min_shops_week"]),
                "week_days": p["week_days"],
                "crossed": pc.crossed(
                    [
                        ("shops in a day", day_ratio >= 1.0),
                        ("shops in a week", week_ratio >= 1.0),
                    ]
                ),
            },
            evidence=evidence,
            window_start=start,
            window_end=anchor,
            link_confidence=confidence,
        )

    @staticmethod
    def _shops(
        session: Session, kind: str, pid: int, since: datetime, until: datetime
    ) -> dict[int, tuple[datetime, datetime, int]]:
        """Shop id -> (first and last placement, last bet id) of the pivot's non-void bets in
        the window: one query serves both windows."""
        out: dict[int, tuple[datetime, datetime, int]] = {}
        for r in pc.pivot_rows(session, kind, pid, since=since, until=until):
            if r.shop_id is None or r.status == BetStatus.void:
                continue
            seen = out.get(r.shop_id)
            if seen is None:
                out[r.shop_id] = (r.placed_at, r.placed_at, r.bet_id)
            else:
                out[r.shop_id] = (min(seen[0], r.placed_at), max(seen[1], r.placed_at),
                                  max(seen[2], r.bet_id))  # fmt: skip
        return out


KIND = MultiShop()
