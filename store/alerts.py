"""Alerts and cases: tables and services (rule versions, alerts, history, snoozes, staff
observations, the staff notification feed and outgoing webhooks).

Services take keyword-only arguments, add/flush only (the caller commits) and write every
analyst action to the audit log and the alert's own history.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint, event, func
from sqlmodel import Field, Session, SQLModel, col, select

from store import audit
from store.access import Actor
from store.errors import Invalid, NotFound
from store.models import Bet, Role, Shop, Slip, _enum, as_utc, utcnow

log = logging.getLogger("sliplink.alerts")

SEVERITY_NAMES = {1: "low", 2: "medium", 3: "high", 4: "critical"}
SEVERITY_LEVELS = {name: level for level, name in SEVERITY_NAMES.items()}


class AlertStatus(enum.StrEnum):
    pending = "pending"
    investigating = "investigating"
    closed = "closed"


class Outcome(enum.StrEnum):
    confirmed_risk = "confirmed_risk"
    valuable = "valuable"
    false_positive = "false_positive"


class ObservationKind(enum.StrEnum):
    distress = "distress"
    agitation = "agitation"
    borrowing = "borrowing"
    aggression = "aggression"
    suspected_self_excluded = "suspected_self_excluded"
    other = "other"


# Which status may follow which; closing needs an outcome, reopening goes back to investigating.
TRANSITIONS = {
    AlertStatus.pending: {AlertStatus.investigating, AlertStatus.closed},
    AlertStatus.investigating: {AlertStatus.closed, AlertStatus.pending},
    AlertStatus.closed: {AlertStatus.investigating},
}


# ---------------------------------------------------------------- tables
class RuleVersion(SQLModel, table=True):
    """Every distinct content of a rule gets the next version number."""

    __tablename__ = "rule_versions"
    __table_args__ = (UniqueConstraint("rule_id", "version", name="uq_rule_versions_rule_id"),)
    id: int | None = Field(default=None, primary_key=True)
    rule_id: str = Field(max_length=64, index=True)
    version: int
    content_hash: str = Field(max_length=64)
    content: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    source: str = Field(default="", max_length=1000)
    created_at: datetime = Field(default_factory=utcnow, nullable=False)


class Alert(SQLModel, table=True):
    """One alert (a case once assigned): the open one per rule + pivot + window collects new
    evidence; ``severity`` is 1..4 (low..critical)."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_dedupe", "rule_id", "pivot_kind", "pivot_id", "status"),
        Index("ix_alerts_pivot", "pivot_kind", "pivot_id", "created_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    rule_id: str = Field(max_length=64)
    rule_version: int
    kind: str = Field(max_length=64)
    severity: int = Field(index=True)
    base_severity: int  # from the bands, before link/staff adjustments and escalation
    status: AlertStatus = Field(default=AlertStatus.pending, index=True, sa_type=_enum(AlertStatus))
    outcome: Outcome | None = Field(default=None, sa_type=_enum(Outcome))
    inbox: str = Field(max_length=32, index=True)
    pivot_kind: str = Field(max_length=16)
    pivot_id: int
    reason: str = Field(max_length=2000)
    value: float
    figures: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    evidence: dict[str, list[int]] = Field(default_factory=dict, sa_column=Column(JSON))
    link_confidence: float | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    suppressed: bool = False
    escalated: bool = False
    hits: int = 1
    assignee: str | None = Field(default=None, max_length=100, index=True)
    created_at: datetime = Field(default_factory=utcnow, index=True, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, nullable=False)
    closed_at: datetime | None = None


class AlertEvent(SQLModel, table=True):
    """The full history of an alert: raised, evidence added, severity, assign, status, note..."""

    __tablename__ = "alert_events"
    id: int | None = Field(default=None, primary_key=True)
    alert_id: int = Field(foreign_key="alerts.id", index=True, ondelete="CASCADE")
    at: datetime = Field(default_factory=utcnow, nullable=False)
    actor: str = Field(max_length=100)
    action: str = Field(max_length=32)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


class Snooze(SQLModel, table=True):
    """A rule silenced for one pivot until a date; its alerts are stored, suppressed."""

    __tablename__ = "rule_snoozes"
    __table_args__ = (Index("ix_rule_snoozes_lookup", "rule_id", "pivot_kind", "pivot_id"),)
    id: int | None = Field(default=None, primary_key=True)
    rule_id: str = Field(max_length=64)
    pivot_kind: str = Field(max_length=16)
    pivot_id: int
    until: datetime
    actor: str = Field(max_length=100)
    reason: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(default_factory=utcnow, nullable=False)


class StaffObservation(SQLModel, table=True):
    """A concern logged by shop staff or an analyst about whoever placed a bet."""

    __tablename__ = "staff_observations"
    __table_args__ = (
        Index("ix_staff_observations_customer", "customer_id", "at"),
        Index("ix_staff_observations_cluster", "cluster_id", "at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, nullable=False)
    actor: str = Field(max_length=100)
    shop_id: int | None = Field(default=None, foreign_key="shops.id")
    kind: ObservationKind = Field(sa_type=_enum(ObservationKind))
    note: str | None = Field(default=None, max_length=2000)
    bet_id: int | None = Field(default=None, foreign_key="bets.id")
    slip_id: int | None = Field(default=None, foreign_key="slips.id")
    customer_id: int | None = Field(default=None, foreign_key="customers.id")
    cluster_id: int | None = None


class Notification(SQLModel, table=True):
    """The staff feed: what colleagues did and daily milestones."""

    __tablename__ = "notifications"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True, nullable=False)
    actor: str = Field(max_length=100)
    kind: str = Field(max_length=32)
    message: str = Field(max_length=1000)
    entity: str = Field(default="", max_length=32)
    entity_id: str = Field(default="", max_length=64)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


class Webhook(SQLModel, table=True):
    __tablename__ = "webhooks"
    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(max_length=1000)
    secret: str = Field(max_length=200)
    min_severity: int = 3
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, nullable=False)


class WebhookDelivery(SQLModel, table=True):
    __tablename__ = "webhook_deliveries"
    id: int | None = Field(default=None, primary_key=True)
    webhook_id: int = Field(foreign_key="webhooks.id", index=True, ondelete="CASCADE")
    alert_id: int = Field(foreign_key="alerts.id", index=True, ondelete="CASCADE")
    attempt: int
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=1000)
    at: datetime = Field(default_factory=utcnow, nullable=False)


# ---------------------------------------------------------------- schemas
class ObservationCreate(SQLModel):
    kind: ObservationKind
    note: str | None = Field(default=None, max_length=2000)
    at: datetime | None = None
    shop_id: int | None = None
    bet_id: int | None = None
    slip_id: int | None = None
    customer_id: int | None = None
    cluster_id: int | None = None


class ObservationPublic(SQLModel):
    id: int
    at: datetime
    actor: str
    shop_id: int | None
    kind: ObservationKind
    note: str | None
    bet_id: int | None
    slip_id: int | None
    customer_id: int | None
    cluster_id: int | None


class WebhookCreate(SQLModel):
    url: str = Field(min_length=8, max_length=1000, regex=r"^https?://")
    secret: str = Field(min_length=16, max_length=200)
    min_severity: str = Field(default="high")
    active: bool = True


def alert_public(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "rule_id": alert.rule_id,
        "rule_version": alert.rule_version,
        "kind": alert.kind,
        "severity": SEVERITY_NAMES.get(alert.severity, str(alert.severity)),
        "status": _val(alert.status),
        "outcome": _val(alert.outcome) if alert.outcome is not None else None,
        "inbox": alert.inbox,
        "pivot_kind": alert.pivot_kind,
        "pivot_id": alert.pivot_id,
        "reason": alert.reason,
        "value": alert.value,
        "figures": alert.figures,
        "link_confidence": alert.link_confidence,
        "window_start": alert.window_start,
        "window_end": alert.window_end,
        "suppressed": alert.suppressed,
        "escalated": alert.escalated,
        "hits": alert.hits,
        "created_at": alert.created_at,
        "updated_at": alert.updated_at,
        "closed_at": alert.closed_at,
        "assignee": alert.assignee,
    }


def _val(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


# ---------------------------------------------------------------- alert services
def add_event(
    session: Session, *, alert: Alert, actor: str, action: str, detail: dict[str, Any] | None = None
) -> AlertEvent:
    event = AlertEvent(
        alert_id=alert.id,  # type: ignore[arg-type]
        actor=actor,
        action=action,
        detail=json.loads(json.dumps(detail or {}, default=str)),
    )
    session.add(event)
    return event


def notify(
    session: Session,
    *,
    actor: str,
    kind: str,
    message: str,
    entity: str = "",
    entity_id: object = "",
    data: dict[str, Any] | None = None,
) -> Notification:
    row = Notification(
        actor=actor,
        kind=kind,
        message=message[:1000],
        entity=entity,
        entity_id=str(entity_id),
        data=data or {},
    )
    session.add(row)
    return row


def get_alert(*, session: Session, alert_id: int) -> Alert:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"alert {alert_id} not found")
    return alert


def list_alerts(
    *,
    session: Session,
    status: str | None = None,
    severity: str | None = None,
    min_severity: str | None = None,
    rule_id: str | None = None,
    inbox: str | None = None,
    shop_id: int | None = None,
    customer_id: int | None = None,
    cluster_id: int | None = None,
    assignee: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    include_suppressed: bool = False,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Alert], int]:
    """Alerts newest first.  ``customer_id``/``cluster_id`` match the pivot or the evidence;
    ``shop_id`` matches the evidence's shops."""
    query = select(Alert)
    if status is not None:
        query = query.where(Alert.status == _choice(AlertStatus, status, "status"))
    if severity is not None:
        query = query.where(Alert.severity == _severity(severity, "severity"))
    if min_severity is not None:
        query = query.where(Alert.severity >= _severity(min_severity, "min_severity"))
    if rule_id is not None:
        query = query.where(Alert.rule_id == rule_id)
    if inbox is not None:
        query = query.where(Alert.inbox == inbox)
    if assignee is not None:
        query = query.where(Alert.assignee == assignee)
    if created_from is not None:
        query = query.where(Alert.created_at >= as_utc(created_from))
    if created_to is not None:
        query = query.where(Alert.created_at < as_utc(created_to))
    if not include_suppressed:
        query = query.where(col(Alert.suppressed).is_(False))
    query = query.order_by(
        col(Alert.severity).desc(), col(Alert.created_at).desc(), col(Alert.id).desc()
    )
    rows = list(session.exec(query).all())
    # evidence lives in JSON, which SQLite and PostgreSQL query differently: filter here
    if customer_id is not None:
        rows = [a for a in rows if _mentions(a, "customer", "customers", customer_id)]
    if cluster_id is not None:
        rows = [a for a in rows if _mentions(a, "cluster", "clusters", cluster_id)]
    if shop_id is not None:
        rows = [a for a in rows if shop_id in (a.evidence or {}).get("shops", [])]
    return rows[offset : offset + limit], len(rows)


def _mentions(alert: Alert, pivot_kind: str, key: str, ident: int) -> bool:
    if alert.pivot_kind == pivot_kind and alert.pivot_id == ident:
        return True
    return ident in (alert.evidence or {}).get(key, [])


def _choice(enum_cls: type[enum.Enum], value: str, name: str) -> Any:
    try:
        return enum_cls(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in enum_cls)
        raise Invalid(f"{name}: must be one of {allowed}") from None


def _severity(value: str, name: str) -> int:
    if value not in SEVERITY_LEVELS:
        raise Invalid(f"{name}: must be one of {', '.join(SEVERITY_LEVELS)}")
    return SEVERITY_LEVELS[value]


def assign_alert(*, session: Session, alert_id: int, assignee: str | None, actor: Actor) -> Alert:
    alert = get_alert(session=session, alert_id=alert_id)
    before = alert.assignee
    alert.assignee = assignee
    alert.updated_at = utcnow()
    session.add(alert)
    add_event(
        session,
        alert=alert,
        actor=actor.name,
        action="assign",
        detail={"from": before, "to": assignee},
    )
    audit.record(
        session,
        actor=actor.name,
        action="alert.assign",
        entity="alert",
        entity_id=alert.id,
        before={"assignee": before},
        after={"assignee": assignee},
    )
    notify(
        session,
        actor=actor.name,
        kind="alert.assign",
        entity="alert",
        entity_id=alert.id,
        message=f"{actor.name} assigned alert {alert.id} ({alert.rule_id}) to "
        f"{assignee or 'nobody'}",
    )
    session.flush()
    return alert


def set_status(
    *,
    session: Session,
    alert_id: int,
    status: str,
    outcome: str | None,
    actor: Actor,
    note: str | None = None,
) -> Alert:
    """Move an alert pending -> investigating -> closed; closing needs an outcome."""
    alert = get_alert(session=session, alert_id=alert_id)
    new = _choice(AlertStatus, status, "status")
    current = AlertStatus(alert.status)
    if new not in TRANSITIONS[current]:
        raise Invalid(f"status: cannot go from {current.value} to {new.value}")
    result = None
    if new == AlertStatus.closed:
        if outcome is None:
            raise Invalid(
                "outcome: closing an alert needs an outcome "
                "(confirmed_risk, valuable, false_positive)"
            )
        result = _choice(Outcome, outcome, "outcome")
    elif outcome is not None:
        raise Invalid("outcome: only given when closing")
    before = {"status": current.value, "outcome": _val(alert.outcome)}
    alert.status = new
    alert.outcome = result
    alert.closed_at = utcnow() if new == AlertStatus.closed else None
    alert.updated_at = utcnow()
    session.add(alert)
    after = {"status": new.value, "outcome": _val(result)}
    add_event(
        session,
        alert=alert,
        actor=actor.name,
        action="status",
        detail={"from": before, "to": after, "note": note},
    )
    audit.record(
        session,
        actor=actor.name,
        action="alert.status",
        entity="alert",
        entity_id=alert.id,
        before=before,
        after=after,
    )
    notify(
        session,
        actor=actor.name,
        kind="alert.status",
        entity="alert",
        entity_id=alert.id,
        message=f"{actor.name} moved alert {alert.id} ({alert.rule_id}) to {new.value}"
        + (f" ({result.value})" if result else ""),
    )
    session.flush()
    return alert


def escalate_alert(*, session: Session, alert_id: int, actor: Actor, note: str | None) -> Alert:
    """One severity level up (critical stays critical) and flagged as escalated."""
    alert = get_alert(session=session, alert_id=alert_id)
    if alert.status == AlertStatus.closed:
        raise Invalid("status: a closed alert cannot be escalated; reopen it first")
    before = alert.severity
    alert.severity = min(4, alert.severity + 1)
    alert.escalated = True
    alert.updated_at = utcnow()
    session.add(alert)
    detail = {"from": SEVERITY_NAMES[before], "to": SEVERITY_NAMES[alert.severity], "note": note}
    add_event(session, alert=alert, actor=actor.name, action="escalate", detail=detail)
    audit.record(
        session,
        actor=actor.name,
        action="alert.escalate",
        entity="alert",
        entity_id=alert.id,
        before={"severity": before},
        after={"severity": alert.severity, "note": note},
    )
    deliver_after_commit(session, alert)
    notify(
        session,
        actor=actor.name,
        kind="alert.escalate",
        entity="alert",
        entity_id=alert.id,
        message=f"{actor.name} escalated alert {alert.id} ({alert.rule_id}) to "
        f"{SEVERITY_NAMES[alert.severity]}",
    )
    session.flush()
    return alert


def add_note(*, session: Session, alert_id: int, text: str, actor: Actor) -> AlertEvent:
    alert = get_alert(session=session, alert_id=alert_id)
    if not text.strip():
        raise Invalid("text: a note cannot be empty")
    event = add_event(session, alert=alert, actor=actor.name, action="note", detail={"text": text})
    alert.updated_at = utcnow()
    session.add(alert)
    audit.record(
        session,
        actor=actor.name,
        action="alert.note",
        entity="alert",
        entity_id=alert.id,
        after={"text": text},
    )
    session.flush()
    return event


# what a rule's findings are about: a customer or a handwriting cluster (rules 1-12, 16), a
# selection (runs on a selection, liability: rules 13 and 15) or a group of tickets named by
# its first bet (linked outsider multiples: rule 14)
SNOOZABLE_PIVOTS = ("customer", "cluster", "selection", "bet")


def snooze(
    *,
    session: Session,
    rule_id: str,
    pivot_kind: str,
    pivot_id: int,
    until: datetime,
    actor: Actor,
    reason: str | None = None,
    alert: Alert | None = None,
) -> Snooze:
    """Silence ``rule_id`` for one pivot until ``until``: alerts keep counting, suppressed."""
    until = as_utc(until)
    if until <= utcnow():
        raise Invalid("until: must be in the future")
    if pivot_kind not in SNOOZABLE_PIVOTS:
        raise Invalid(f"pivot_kind: must be one of {', '.join(SNOOZABLE_PIVOTS)}")
    row = Snooze(
        rule_id=rule_id,
        pivot_kind=pivot_kind,
        pivot_id=pivot_id,
        until=until,
        actor=actor.name,
        reason=reason,
    )
    session.add(row)
    session.flush()
    if alert is not None and alert.status != AlertStatus.closed:
        alert.suppressed = True
        alert.updated_at = utcnow()
        session.add(alert)
        add_event(
            session,
            alert=alert,
            actor=actor.name,
            action="snooze",
            detail={"until": until, "reason": reason},
        )
    audit.record(
        session,
        actor=actor.name,
        action="rule.snooze",
        entity="snooze",
        entity_id=row.id,
        after={
            "rule_id": rule_id,
            "pivot_kind": pivot_kind,
            "pivot_id": pivot_id,
            "until": until,
            "reason": reason,
        },
    )
    notify(
        session,
        actor=actor.name,
        kind="rule.snooze",
        entity="snooze",
        entity_id=row.id,
        message=f"{actor.name} snoozed {rule_id} for {pivot_kind} {pivot_id} until "
        f"{until:%Y-%m-%d %H:%M}",
    )
    session.flush()
    return row


def active_snooze(
    *, session: Session, rule_id: str, pivot_kind: str, pivot_id: int, at: datetime
) -> Snooze | None:
    return session.exec(
        select(Snooze)
        .where(
            Snooze.rule_id == rule_id,
            Snooze.pivot_kind == pivot_kind,
            Snooze.pivot_id == pivot_id,
            Snooze.until > as_utc(at),
        )
        .order_by(col(Snooze.until).desc())
    ).first()


def alert_history(*, session: Session, alert_id: int) -> list[AlertEvent]:
    return list(
        session.exec(
            select(AlertEvent).where(AlertEvent.alert_id == alert_id).order_by(col(AlertEvent.id))
        ).all()
    )


def alert_detail(*, session: Session, alert: Alert) -> dict[str, Any]:
    """The alert with its evidence rows (bets, slips, clusters, customers, shops), history and
    notes.  Customer rows carry only what an analyst needs to judge the alert."""
    from store.models import Customer

    ev = alert.evidence or {}
    out = alert_public(alert)
    bet_ids = ev.get("bets", [])[:500]
    bets = session.exec(select(Bet).where(col(Bet.id).in_(bet_ids))).all() if bet_ids else []
    slip_by_bet: dict[int, int] = {}
    if bet_ids:
        slip_by_bet = {
            b: int(s or 0)
            for s, b in session.exec(
                select(Slip.id, Slip.bet_id).where(col(Slip.bet_id).in_(bet_ids))
            ).all()
        }
    out["bets"] = [
        {
            "id": b.id,
            "placed_at": b.placed_at,
            "shop_id": b.shop_id,
            "customer_id": b.customer_id,
            "stake": b.stake,
            "total_stake": b.total_stake,
            "currency": b.currency,
            "bet_type": b.bet_type,
            "sport": b.sport,
            "odds": b.odds,
            "status": _val(b.status),
            "returns": b.returns,
            "slip_id": slip_by_bet.get(b.id or 0),
        }
        for b in sorted(bets, key=lambda b: (b.placed_at, b.id or 0))
    ]
    slip_ids = sorted(set(ev.get("slips", [])) | {s for s in slip_by_bet.values()})[:500]
    out["slips"] = [
        {"id": s.id, "bet_id": s.bet_id, "status": _val(s.status), "image": f"/slips/{s.id}/image"}
        for s in (
            session.exec(select(Slip).where(col(Slip.id).in_(slip_ids))).all() if slip_ids else []
        )
    ]
    cluster_ids = sorted(
        set(ev.get("clusters", [])) | ({alert.pivot_id} if alert.pivot_kind == "cluster" else set())
    )
    out["clusters"] = [{"id": c, "href": f"/clusters/{c}"} for c in cluster_ids]
    cust_ids = sorted(
        set(ev.get("customers", []))
        | ({alert.pivot_id} if alert.pivot_kind == "customer" else set())
    )
    out["customers"] = [
        {
            "id": c.id,
            "external_ref": c.external_ref,
            "name": c.name,
            "status": _val(c.status),
            "risk_category": c.risk_category,
            "stake_factor": c.stake_factor,
        }
        for c in (
            session.exec(select(Customer).where(col(Customer.id).in_(cust_ids))).all()
            if cust_ids
            else []
        )
    ]
    shop_ids = sorted(set(ev.get("shops", [])) | {b.shop_id for b in bets if b.shop_id})
    out["shops"] = [
        {"id": s.id, "code": s.code, "name": s.name, "region": s.region}
        for s in (
            session.exec(select(Shop).where(col(Shop.id).in_(shop_ids))).all() if shop_ids else []
        )
    ]
    history = alert_history(session=session, alert_id=alert.id)  # type: ignore[arg-type]
    out["history"] = [
        {"id": e.id, "at": e.at, "actor": e.actor, "action": e.action, "detail": e.detail}
        for e in history
    ]
    out["notes"] = [
        {"id": e.id, "at": e.at, "actor": e.actor, "text": e.detail.get("text", "")}
        for e in history
        if e.action == "note"
    ]
    return out


def rule_precision(*, session: Session) -> dict[str, dict[str, Any]]:
    """Per rule, outcomes of closed alerts and precision = (confirmed_risk + valuable) /
    closed: a valuable customer is a true finding for trading, a false positive is not."""
    rows = session.exec(
        select(Alert.rule_id, Alert.outcome, func.count())
        .where(Alert.status == AlertStatus.closed)
        .group_by(col(Alert.rule_id), col(Alert.outcome))
    ).all()
    out: dict[str, dict[str, Any]] = {}
    for rule_id, outcome, n in rows:
        entry = out.setdefault(rule_id, {o.value: 0 for o in Outcome})
        entry[_val(outcome)] = int(n)
    for entry in out.values():
        closed = sum(entry[o.value] for o in Outcome)
        hits = entry["confirmed_risk"] + entry["valuable"]
        entry["closed"] = closed
        entry["precision"] = round(hits / closed, 4) if closed else None
    return out


# ---------------------------------------------------------------- staff observations
def create_observation(
    *, session: Session, obs_in: ObservationCreate, actor: Actor
) -> StaffObservation:
    """Log a staff concern; a shop key logs for its own shop only.  The engine then raises
    the severity of open alerts on the same pivot (rule kind ``staff_observation``)."""
    shop_id = obs_in.shop_id
    if actor.role == Role.shop:
        if shop_id is not None and shop_id != actor.shop_id:
            raise Invalid("shop_id: a shop key can only log observations for its own shop")
        shop_id = actor.shop_id
    if obs_in.bet_id is not None:
        bet = session.get(Bet, obs_in.bet_id)
        if bet is None or (actor.role == Role.shop and bet.shop_id != actor.shop_id):
            raise NotFound(f"bet_id: bet {obs_in.bet_id} not found")
    if obs_in.slip_id is not None and session.get(Slip, obs_in.slip_id) is None:
        raise NotFound(f"slip_id: slip {obs_in.slip_id} not found")
    if obs_in.customer_id is not None:
        from store.models import Customer

        if session.get(Customer, obs_in.customer_id) is None:
            raise NotFound(f"customer_id: customer {obs_in.customer_id} not found")
    if shop_id is not None and session.get(Shop, shop_id) is None:
        raise NotFound(f"shop_id: shop {shop_id} not found")
    if not any(
        v is not None
        for v in (obs_in.bet_id, obs_in.slip_id, obs_in.customer_id, obs_in.cluster_id)
    ):
        raise Invalid("bet_id: an observation needs a bet, slip, customer or cluster")
    row = StaffObservation(
        at=as_utc(obs_in.at) if obs_in.at else utcnow(),
        actor=actor.name,
        shop_id=shop_id,
        kind=obs_in.kind,
        note=obs_in.note,
        bet_id=obs_in.bet_id,
        slip_id=obs_in.slip_id,
        customer_id=obs_in.customer_id,
        cluster_id=obs_in.cluster_id,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor.name,
        action="observation.create",
        entity="observation",
        entity_id=row.id,
        after=obs_in.model_dump(mode="json") | {"shop_id": shop_id},
    )
    notify(
        session,
        actor=actor.name,
        kind="observation",
        entity="observation",
        entity_id=row.id,
        message=f"{actor.name} logged a staff observation ({_val(row.kind)})",
    )
    return row


# ---------------------------------------------------------------- webhooks
def create_webhook(*, session: Session, hook_in: WebhookCreate, actor: Actor) -> Webhook:
    row = Webhook(
        url=hook_in.url,
        secret=hook_in.secret,
        min_severity=_severity(hook_in.min_severity, "min_severity"),
        active=hook_in.active,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor.name,
        action="webhook.create",
        entity="webhook",
        entity_id=row.id,
        after={"url": row.url, "min_severity": row.min_severity},
    )
    return row


def sign(secret: str, body: bytes) -> str:
    """The ``X-Sliplink-Signature`` header value: HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_payload(alert: Alert) -> bytes:
    data = {"event": "alert", "alert": alert_public(alert)}
    return json.dumps(data, default=str, sort_keys=True).encode()


def deliver_alert(
    *,
    session: Session,
    alert_id: int,
    attempts: int = 4,
    backoff: float = 0.5,
    timeout: float = 5.0,
) -> list[WebhookDelivery]:
    """POST the alert to every active webhook whose ``min_severity`` it reaches.

    Each attempt is logged in ``webhook_deliveries``; failures (connection errors, non-2xx)
    are retried up to ``attempts`` times with exponential backoff (``backoff * 2**n`` s).
    Suppressed alerts are never sent.  Commits nothing: the caller does.
    """
    alert = get_alert(session=session, alert_id=alert_id)
    if alert.suppressed:
        return []
    hooks = session.exec(
        select(Webhook).where(col(Webhook.active).is_(True), Webhook.min_severity <= alert.severity)
    ).all()
    body = webhook_payload(alert)
    deliveries: list[WebhookDelivery] = []
    for hook in hooks:
        for attempt in range(1, attempts + 1):
            status, error = _post(hook.url, body, sign(hook.secret, body), timeout=timeout)
            row = WebhookDelivery(
                webhook_id=hook.id,  # type: ignore[arg-type]
                alert_id=alert_id,
                attempt=attempt,  # type: ignore[arg-type]
                status_code=status,
                error=error,
            )
            session.add(row)
            deliveries.append(row)
            if error is None:
                break
            if attempt < attempts:
                time.sleep(backoff * 2 ** (attempt - 1))
    session.flush()
    return deliveries


_PENDING = "sliplink_webhook_alerts"


def deliver_after_commit(session: Session, alert: Alert, *, min_severity: int = 3) -> None:
    """Send the alert to the webhooks once the transaction commits, in a background thread
    (retries sleep; the request or task must not wait).  Suppressed alerts are never sent.

    Hooked on SQLAlchemy's own ``after_commit``/``after_rollback`` session events, so it works
    whoever commits (request, pipeline task, CLI); a rollback forgets the pending sends.
    """
    if alert.suppressed or alert.severity < min_severity:
        return
    if _PENDING + "_any" not in session.info:  # no webhook configured: nothing to send
        session.info[_PENDING + "_any"] = (
            session.exec(select(Webhook.id).where(col(Webhook.active).is_(True))).first()
            is not None
        )
    if not session.info[_PENDING + "_any"]:
        return
    pending = session.info.setdefault(_PENDING, [])
    if not pending and not session.info.get(_PENDING + "_hooked"):
        session.info[_PENDING + "_hooked"] = True
        event.listen(session, "after_commit", _send_pending)
        event.listen(session, "after_rollback", _forget_pending)
    if alert.id not in pending:
        pending.append(int(alert.id))  # type: ignore[arg-type]


def _forget_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)
    session.info.pop(_PENDING + "_any", None)


def _send_pending(session: Session) -> None:
    session.info.pop(_PENDING + "_any", None)
    ids = session.info.pop(_PENDING, [])
    if not ids:
        return
    engine = session.get_bind()

    def work() -> None:
        for alert_id in ids:
            try:
                with Session(engine) as s:
                    deliver_alert(session=s, alert_id=alert_id)
                    s.commit()
            except Exception:  # noqa: BLE001 - a failed delivery is logged, never raised
                log.exception("webhook delivery for alert %s failed", alert_id)

    threading.Thread(target=work, name="sliplink-webhooks", daemon=True).start()


def _post(
    url: str, body: bytes, signature: str, *, timeout: float
) -> tuple[int | None, str | None]:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-Sliplink-Signature": signature,
            "User-Agent": "sliplink-webhook/1",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - admin-set URL
            return int(resp.status), None
    except urllib.error.HTTPError as exc:
        return int(exc.code), f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return None, str(getattr(exc, "reason", exc))[:1000]


# ---------------------------------------------------------------- notification feed
def list_notifications(
    *, session: Session, since: datetime | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[Notification], int]:
    query = select(Notification)
    if since is not None:
        query = query.where(Notification.at >= as_utc(since))
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(
        query.order_by(col(Notification.at).desc(), col(Notification.id).desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), int(total)


def daily_milestones(*, session: Session, day: datetime, actor: str = "system") -> Notification:
    """One feed entry summarising a day: bets, slips, alerts raised and cases closed."""
    start = as_utc(day).replace(hour=0, minute=0, second=0, microsecond=0)
    end = start + timedelta(days=1)
    bets = session.exec(
        select(func.count()).select_from(Bet).where(Bet.placed_at >= start, Bet.placed_at < end)
    ).one()
    slips = session.exec(
        select(func.count())
        .select_from(Slip)
        .where(Slip.uploaded_at >= start, Slip.uploaded_at < end)
    ).one()
    raised = session.exec(
        select(func.count())
        .select_from(Alert)
        .where(Alert.created_at >= start, Alert.created_at < end)
    ).one()
    closed = session.exec(
        select(func.count())
        .select_from(Alert)
        .where(col(Alert.closed_at) >= start, col(Alert.closed_at) < end)
    ).one()
    data = {
        "day": start.date().isoformat(),
        "bets": int(bets),
        "slips": int(slips),
        "alerts_raised": int(raised),
        "cases_closed": int(closed),
    }
    return notify(
        session,
        actor=actor,
        kind="milestone",
        entity="day",
        entity_id=data["day"],
        message=f"{data['day']}: {bets} bets, {slips} slips, {raised} alerts raised, "
        f"{closed} cases closed",
        data=data,
    )


# ---------------------------------------------------------------- indexes on bets for the rules
# The event rules read one customer's (or one cluster's) recent bets and the settlements of a
# window; these composite indexes keep that under a few ms at a million bets (bench/rules.py).
Index("ix_bets_customer_placed", Bet.__table__.c.customer_id, Bet.__table__.c.placed_at)  # type: ignore[attr-defined]
Index("ix_bets_settled_at", Bet.__table__.c.settled_at)  # type: ignore[attr-defined]
