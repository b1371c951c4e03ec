"""Alerts and cases: list and filter, detail with evidence, assign, status, escalate, snooze,
notes; the rules with their versions and precision; staff observations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import AdminUser, AnalystUser, SessionDep, ShopUser
from store import alerts as service
from store.alerts import ObservationCreate, ObservationPublic

router = APIRouter(prefix="/alerts", tags=["alerts"])
rules_router = APIRouter(prefix="/rules", tags=["alerts"])
observations_router = APIRouter(prefix="/observations", tags=["alerts"])


class AssignIn(BaseModel):
    assignee: str | None = Field(default=None, max_length=100)


class StatusIn(BaseModel):
    status: str
    outcome: str | None = None
    note: str | None = Field(default=None, max_length=2000)


class EscalateIn(BaseModel):
    note: str | None = Field(default=None, max_length=2000)


class SnoozeIn(BaseModel):
    until: datetime
    reason: str | None = Field(default=None, max_length=2000)


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=5000)


@router.get("")
def list_alerts(
    session: SessionDep,
    _actor: AnalystUser,
    status: str | None = None,
    severity: str | None = None,
    min_severity: str | None = None,
    rule: str | None = Query(None, description="rule id"),
    inbox: str | None = None,
    shop_id: int | None = None,
    customer_id: int | None = None,
    cluster_id: int | None = None,
    assignee: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    include_suppressed: bool = False,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    rows, total = service.list_alerts(
        session=session,
        status=status,
        severity=severity,
        min_severity=min_severity,
        rule_id=rule,
        inbox=inbox,
        shop_id=shop_id,
        customer_id=customer_id,
        cluster_id=cluster_id,
        assignee=assignee,
        created_from=created_from,
        created_to=created_to,
        include_suppressed=include_suppressed,
        limit=limit,
        offset=offset,
    )
    return {
        "items": [service.alert_public(a) for a in rows],
        "total": total,
        "limit": limit,
        "offset": offset,
    }


@router.get("/{alert_id}")
def get_alert(alert_id: int, session: SessionDep, _actor: AnalystUser) -> dict[str, Any]:
    alert = service.get_alert(session=session, alert_id=alert_id)
    return service.alert_detail(session=session, alert=alert)


@router.post("/{alert_id}/assign")
def assign(
    alert_id: int, body: AssignIn, session: SessionDep, actor: AnalystUser
) -> dict[str, Any]:
    alert = service.assign_alert(
        session=session, alert_id=alert_id, assignee=body.assignee, actor=actor
    )
    return service.alert_public(alert)


@router.post("/{alert_id}/status")
def set_status(
    alert_id: int, body: StatusIn, session: SessionDep, actor: AnalystUser
) -> dict[str, Any]:
    alert = service.set_status(
        session=session,
        alert_id=alert_id,
        status=body.status,
        outcome=body.outcome,
        note=body.note,
        actor=actor,
    )
    return service.alert_public(alert)


@router.post("/{alert_id}/escalate")
def escalate(
    alert_id: int, body: EscalateIn, session: SessionDep, actor: AnalystUser
) -> dict[str, Any]:
    alert = service.escalate_alert(session=session, alert_id=alert_id, actor=actor, note=body.note)
    return service.alert_public(alert)


@router.post("/{alert_id}/snooze")
def snooze(
    alert_id: int, body: SnoozeIn, session: SessionDep, actor: AnalystUser
) -> dict[str, Any]:
    """Snooze the alert's rule for its pivot until ``until``: later findings still count on
    the alert, which stays out of the default listing and sends no webhook."""
    alert = service.get_alert(session=session, alert_id=alert_id)
    row = service.snooze(
        session=session,
        rule_id=alert.rule_id,
        pivot_kind=alert.pivot_kind,
        pivot_id=alert.pivot_id,
        until=body.until,
        reason=body.reason,
        actor=actor,
        alert=alert,
    )
    return service.alert_public(alert) | {"snoozed_until": row.until}


@router.post("/{alert_id}/notes", status_code=201)
def add_note(
    alert_id: int, body: NoteIn, session: SessionDep, actor: AnalystUser
) -> dict[str, Any]:
    event = service.add_note(session=session, alert_id=alert_id, text=body.text, actor=actor)
    return {"id": event.id, "at": event.at, "actor": event.actor, "text": body.text}


# ---------------------------------------------------------------- rules
@rules_router.get("")
def list_rules(session: SessionDep, _actor: AnalystUser) -> list[dict[str, Any]]:
    """The loaded rules with their stored version and the precision of their closed cases."""
    from rules.engine import active_rules
    from rules.loader import rule_content

    precision = service.rule_precision(session=session)
    out = []
    for rule in active_rules(session=session):
        out.append(
            rule_content(rule)
            | {"version": rule.version, "source": rule.source, "outcomes": precision.get(rule.id)}
        )
    return out


@rules_router.post("/screening")
def run_screening(session: SessionDep, _actor: AdminUser) -> dict[str, Any]:
    """Run the scheduled screening now (normally daily, by the scheduler)."""
    from rules.engine import run_screening as screen

    alerts = screen(session=session)
    return {"alerts": len(alerts), "ids": sorted(a.id for a in alerts)}  # type: ignore[type-var]


# ---------------------------------------------------------------- staff observations
@observations_router.post("", status_code=201, response_model=ObservationPublic)
def create_observation(
    body: ObservationCreate, session: SessionDep, actor: ShopUser
) -> ObservationPublic:
    """Log a staff concern; open alerts on the same customer or cluster go one level up."""
    from rules.engine import apply_observation

    row = service.create_observation(session=session, obs_in=body, actor=actor)
    apply_observation(session=session, observation=row)
    return ObservationPublic.model_validate(row)


@observations_router.get("", response_model=list[ObservationPublic])
def list_observations(
    session: SessionDep,
    _actor: AnalystUser,
    customer_id: int | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> list[ObservationPublic]:
    from sqlmodel import col, select

    query = select(service.StaffObservation)
    if customer_id is not None:
        query = query.where(service.StaffObservation.customer_id == customer_id)
    rows = session.exec(query.order_by(col(service.StaffObservation.at).desc()).limit(limit))
    return [ObservationPublic.model_validate(r) for r in rows.all()]


ROUTERS = (router, rules_router, observations_router)
