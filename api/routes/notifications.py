"""The staff notification feed and the outgoing webhooks (admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from sqlmodel import col, select

from api.deps import AdminUser, AnalystUser, SessionDep
from store import alerts as service
from store.alerts import WebhookCreate, WebhookDelivery

router = APIRouter(tags=["notifications"])


def _hook(h: service.Webhook) -> dict[str, Any]:
    # the secret is shown once, at creation, never listed
    return {
        "id": h.id,
        "url": h.url,
        "min_severity": service.SEVERITY_NAMES[h.min_severity],
        "active": h.active,
        "created_at": h.created_at,
    }


@router.get("/notifications")
def notifications(
    session: SessionDep,
    _actor: AnalystUser,
    since: datetime | None = None,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    """What colleagues did (assignments, status changes, escalations, snoozes, observations)
    and daily milestones, newest first."""
    rows, total = service.list_notifications(
        session=session, since=since, limit=limit, offset=offset
    )
    items = [
        {
            "id": n.id,
            "at": n.at,
            "actor": n.actor,
            "kind": n.kind,
            "message": n.message,
            "entity": n.entity,
            "entity_id": n.entity_id,
            "data": n.data,
        }
        for n in rows
    ]
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@router.post("/webhooks", status_code=201)
def create_webhook(body: WebhookCreate, session: SessionDep, actor: AdminUser) -> dict[str, Any]:
    return _hook(service.create_webhook(session=session, hook_in=body, actor=actor))


@router.get("/webhooks")
def list_webhooks(session: SessionDep, _actor: AdminUser) -> list[dict[str, Any]]:
    return [
        _hook(h) for h in session.exec(select(service.Webhook).order_by(col(service.Webhook.id)))
    ]


@router.get("/webhooks/deliveries")
def deliveries(
    session: SessionDep,
    _actor: AdminUser,
    alert_id: int | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> list[dict[str, Any]]:
    """The delivery log: one row per attempt."""
    query = select(WebhookDelivery)
    if alert_id is not None:
        query = query.where(WebhookDelivery.alert_id == alert_id)
    rows = session.exec(query.order_by(col(WebhookDelivery.id).desc()).limit(limit)).all()
    return [
        {
            "id": d.id,
            "webhook_id": d.webhook_id,
            "alert_id": d.alert_id,
            "attempt": d.attempt,
            "status_code": d.status_code,
            "error": d.error,
            "at": d.at,
        }
        for d in rows
    ]


ROUTERS = (router,)
