"""Shared types of the rules engine: rules, bands, triggers, findings and the kind protocol.

A *kind* is a pure query over stored bets, legs, customers, shops and clusters that turns a
trigger into findings; the engine maps each finding's value through the rule's bands to a
severity and stores the alert. Kinds never write.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlmodel import Session

__all__ = ["Band", "Finding", "Kind", "Rule", "Scope", "Severity", "Trigger"]

TRIGGER_KINDS = frozenset(
    {"bet_placed", "bet_settled", "slip_clustered", "odds_snapshot", "schedule"}
)


class Severity(enum.IntEnum):
    """Alert severity; ordered so that a higher band compares greater."""

    low = 1
    medium = 2
    high = 3
    critical = 4


@dataclass(frozen=True)
class Band:
    """A value range ``lower <= value < upper`` (``upper=None``: unbounded) and its severity.

    ``reason`` is a format string that may use ``{value}`` and any key of ``Finding.figures``.
    """

    lower: float
    upper: float | None
    severity: Severity
    reason: str


@dataclass(frozen=True)
class Scope:
    """Where a rule applies: ``"all"`` shops, one ``"region"`` or one ``"shop"`` (by code)."""

    kind: str = "all"
    value: str | None = None


@dataclass(frozen=True)
class Rule:
    """One versioned rule, as loaded from a YAML rule file."""

    id: str
    version: int
    kind: str
    description: str
    params: Mapping[str, Any]
    window: timedelta | None
    bands: tuple[Band, ...]
    scope: Scope
    inbox: str  # "compliance" | "safer_gambling" | "trading" | "link_verification"
    enabled: bool
    source: str  # file path


@dataclass(frozen=True)
class Trigger:
    """What happened: a bet placed or settled, a slip joining a cluster, new prices of a
    selection from the odds feed (``selection``, optional ``event_ref``), or a scheduled run."""

    kind: str  # "bet_placed" | "bet_settled" | "slip_clustered" | "odds_snapshot" | "schedule"
    at: datetime
    bet_id: int | None = None
    slip_id: int | None = None
    cluster_id: int | None = None
    customer_id: int | None = None
    selection: str | None = None
    event_ref: str | None = None
    # slip_clustered: the slip joined a cluster that existed before and nothing else moved
    # (the incremental assigner's join), so the engine may leave out the rules the join
    # cannot change (`rules.engine.join_changes`); False (re-cluster, a new cluster): all run
    grown: bool = False

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-able dict (``at`` as ISO 8601) for queues such as Celery."""
        return {
            "kind": self.kind,
            "at": self.at.isoformat(),
            "bet_id": self.bet_id,
            "slip_id": self.slip_id,
            "cluster_id": self.cluster_id,
            "customer_id": self.customer_id,
            "selection": self.selection,
            "event_ref": self.event_ref,
            "grown": self.grown,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Trigger:
        """Inverse of `to_json`; ``at`` may be a datetime or an ISO 8601 string."""
        kind = data.get("kind")
        if kind not in TRIGGER_KINDS:
            raise ValueError(f"kind: unknown trigger kind {kind!r}")
        at = data.get("at")
        if isinstance(at, str):
            at = datetime.fromisoformat(at)
        if not isinstance(at, datetime):
            raise ValueError("at: expected a datetime or ISO 8601 string")
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)

        def _int(name: str) -> int | None:
            value = data.get(name)
            return None if value is None else int(value)

        def _text(name: str) -> str | None:
            value = data.get(name)
            return None if value is None else str(value)

        return cls(
            kind=kind,
            at=at,
            bet_id=_int("bet_id"),
            slip_id=_int("slip_id"),
            cluster_id=_int("cluster_id"),
            customer_id=_int("customer_id"),
            selection=_text("selection"),
            event_ref=_text("event_ref"),
            grown=bool(data.get("grown", False)),
        )


@dataclass
class Finding:
    """What a kind found for one pivot.

    ``value`` is the figure compared with the bands; ``figures`` holds every number compared
    with a threshold, by name; ``evidence`` maps ``"bets"``, ``"slips"``, ``"clusters"``,
    ``"customers"``, ``"shops"`` to ids. ``link_confidence`` is set when the finding rests on a
    handwriting link.
    """

    pivot_kind: str  # "customer" | "cluster"
    pivot_id: int
    value: float
    figures: dict[str, float | int | str] = field(default_factory=dict)
    evidence: dict[str, list[int]] = field(default_factory=dict)
    window_start: datetime | None = None
    window_end: datetime | None = None
    link_confidence: float | None = None


class Kind(Protocol):
    """A rule kind: a module-level ``KIND`` object in ``rules/kinds/<name>.py``."""

    name: str
    defaults: Mapping[str, Any]
    triggers: frozenset[str]  # which Trigger kinds it reacts to

    def evaluate(self, *, session: Session, rule: Rule, trigger: Trigger) -> list[Finding]: ...
