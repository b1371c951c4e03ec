"""The append-only audit log: one helper to add an entry inside the caller's transaction."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from store.models import AuditEntry


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
    entry = AuditEntry(
        actor=actor,
        action=action,
        entity=entity,
        entity_id=str(entity_id),
        before=_jsonable(before),
        after=_jsonable(after),
        # an API request puts its client's address on the session (api.deps.get_session)
        remote_addr=remote_addr or session.info.get("remote_addr"),
    )
    session.add(entry)
    return entry


def _jsonable(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    import json

    return json.loads(json.dumps(value, default=str))
