"""The append-only audit log: one helper to add an entry inside the caller's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlmodel import Session

from store.models import AuditEntry, utcnow


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    entity: str,
    entity_id: object = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    remote_addr: str | None = None,
) -> AuditEntry:
    entry = AuditEntry(**_values(session, actor, action, entity, entity_id, before, after,
                                 remote_addr))  # fmt: skip
    session.add(entry)
    return entry


_INSERT = insert(AuditEntry.__table__)  # type: ignore[attr-defined]


def write(
    session: Session,
    *,
    actor: str,
    action: str,
    entity: str,
    entity_id: object = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    remote_addr: str | None = None,
) -> None:
    """``record``, written at once with a plain INSERT (no ORM object, no flush): for hot
    paths that write their own rows the same way (``store.bets.create_bet``)."""
    values = _values(session, actor, action, entity, entity_id, before, after, remote_addr)
    session.connection().execute(_INSERT, values | {"at": utcnow()})


def _values(
    session: Session,
    actor: str,
    action: str,
    entity: str,
    entity_id: object,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    remote_addr: str | None,
) -> dict[str, Any]:
    return {
        "actor": actor,
        "action": action,
        "entity": entity,
        "entity_id": str(entity_id),
        "before": _jsonable(before),
        "after": _jsonable(after),
        # an API request puts its client's address on the session (api.deps.get_session)
        "remote_addr": remote_addr or session.info.get("remote_addr"),
    }


def _jsonable(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    import json

    return json.loads(json.dumps(value, default=str))
