"""The self-exclusion register: multi-operator entries (CSV import) and the operator's own,
linked to customers, with expiry and a 24-hour cooling-off before reinstatement."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

from sqlmodel import Session, select

from store import audit
from store.access import Actor
from store.errors import Invalid, NotFound
from store.models import Customer, CustomerStatus, as_utc, utcnow
from store.trading import SelfExclusion

COOLING_OFF = timedelta(hours=24)
CSV_HEADER = ["reference", "name", "nominated_shops", "start", "end", "customer_ref"]


def _parse_date(value: str, *, where: str) -> datetime | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        raise Invalid(f"{where}: {value!r} is not an ISO date") from None


def add_exclusion(
    *,
    session: Session,
    actor: Actor,
    source: str,
    reference: str,
    starts_on: datetime,
    ends_on: datetime | None = None,
    name: str | None = None,
    nominated_shops: list[str] | None = None,
    customer_id: int | None = None,
) -> SelfExclusion:
    """Record an exclusion; a linked customer becomes self-excluded while it is in force."""
    if source not in ("multi_operator", "own"):
        raise Invalid("source must be multi_operator or own")
    if ends_on is not None and ends_on <= starts_on:
        raise Invalid("end must be after start")
    if customer_id is not None and session.get(Customer, customer_id) is None:
        raise NotFound(f"customer {customer_id} not found")
    row = session.exec(
        select(SelfExclusion).where(
            SelfExclusion.source == source, SelfExclusion.reference == reference
        )
    ).first()
    if row is None:
        row = SelfExclusion(source=source, reference=reference, starts_on=starts_on)
    row.name, row.nominated_shops, row.customer_id = name, nominated_shops or [], customer_id
    row.starts_on, row.ends_on = starts_on, ends_on
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor.name,
        action="exclusion.record",
        entity="self_exclusion",
        entity_id=row.id,
        after={"source": source, "reference": reference, "customer_id": customer_id},
    )
    apply_exclusions(session=session, now=utcnow())
    return row


def import_register(*, session: Session, text: str, actor: Actor) -> dict[str, int]:
    """Import a multi-operator register CSV (``CSV_HEADER``); all rows or none."""
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not {"reference", "start"} <= set(reader.fieldnames):
        raise Invalid(f"csv: header must include {','.join(CSV_HEADER)}")
    count = linked = 0
    for line, row in enumerate(reader, start=2):
        ref = (row.get("reference") or "").strip()
        if not ref:
            raise Invalid(f"csv line {line}: reference is empty")
        start = _parse_date(row.get("start", ""), where=f"csv line {line} start")
        if start is None:
            raise Invalid(f"csv line {line}: start is required")
        customer_id = None
        customer_ref = (row.get("customer_ref") or "").strip()
        if customer_ref:
            customer = session.exec(
                select(Customer).where(Customer.external_ref == customer_ref)
            ).first()
            if customer is None:
                raise Invalid(f"csv line {line}: unknown customer {customer_ref!r}")
            customer_id, linked = customer.id, linked + 1
        shops = [s.strip() for s in (row.get("nominated_shops") or "").split(";") if s.strip()]
        try:
            add_exclusion(
                session=session,
                actor=actor,
                source="multi_operator",
                reference=ref,
                starts_on=start,
                ends_on=_parse_date(row.get("end", ""), where=f"csv line {line} end"),
                name=(row.get("name") or None),
                nominated_shops=shops,
                customer_id=customer_id,
            )
        except Invalid as exc:
            raise Invalid(f"csv line {line}: {exc.detail}") from None
        count += 1
    return {"imported": count, "linked_to_customers": linked}


def request_reinstatement(*, session: Session, exclusion_id: int, actor: Actor) -> SelfExclusion:
    row = session.get(SelfExclusion, exclusion_id)
    if row is None:
        raise NotFound(f"self-exclusion {exclusion_id} not found")
    now = utcnow()
    if row.ends_on is None or as_utc(row.ends_on) > now:
        raise Invalid(
            "the exclusion is still in force: reinstatement can be asked for once it ends"
        )
    row.reinstatement_requested_at = now
    session.add(row)
    audit.record(
        session,
        actor=actor.name,
        action="exclusion.reinstatement_requested",
        entity="self_exclusion",
        entity_id=exclusion_id,
    )
    return row


def apply_exclusions(*, session: Session, now: datetime) -> dict[str, int]:
    """Bring customers' status in line with the register (run daily and on every change):
    in force -> self_excluded; ended, asked for reinstatement and 24 h cooled off -> active."""
    excluded = reinstated = 0
    for row in session.exec(select(SelfExclusion).where(SelfExclusion.customer_id != None)):  # noqa: E711
        customer = session.get(Customer, row.customer_id)
        if customer is None:
            continue
        ended = row.ends_on is not None and as_utc(row.ends_on) <= now
        in_force = as_utc(row.starts_on) <= now and not ended
        if in_force and customer.status == CustomerStatus.active:
            customer.status = CustomerStatus.self_excluded
            excluded += 1
        elif (
            ended
            and customer.status == CustomerStatus.self_excluded
            and row.reinstatement_requested_at is not None
            and now - as_utc(row.reinstatement_requested_at) >= COOLING_OFF
        ):
            customer.status = CustomerStatus.active
            reinstated += 1
        else:
            continue
        customer.updated_at = now
        session.add(customer)
        audit.record(
            session,
            actor="system",
            action="customer.exclusion_status",
            entity="customer",
            entity_id=customer.id,
            after={"status": customer.status, "exclusion": row.reference},
        )
    return {"excluded": excluded, "reinstated": reinstated}
