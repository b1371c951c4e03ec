"""Stake factoring: per-customer factor and restrictions, their history, CSV import/export,
and the effective factor that handwriting links impose."""

from __future__ import annotations

import csv
import io
import math

from sqlmodel import Session, col, select

from store import audit
from store.access import Actor
from store.errors import Invalid, NotFound
from store.models import Customer, utcnow
from store.trading import FactorChange

CSV_HEADER = ["external_ref", "stake_factor", "restricted_sports", "restricted_price_types"]
PRICE_TYPES = {"SP", "early", "board"}


def set_factoring(
    *,
    session: Session,
    customer_id: int,
    actor: Actor,
    reason: str,
    stake_factor: float | None = None,
    restricted_sports: list[str] | None = None,
    restricted_price_types: list[str] | None = None,
    inherit_linked_factor: bool | None = None,
) -> Customer:
    """Change a customer's factoring; every change is kept with who and why."""
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFound(f"customer {customer_id} not found")
    if not reason.strip():
        raise Invalid("reason: say why the factoring changes")
    if stake_factor is not None and (
        not math.isfinite(stake_factor) or not 0 < stake_factor <= 100
    ):
        raise Invalid("stake_factor must be a number above 0 and at most 100")
    if restricted_price_types is not None:
        unknown = set(restricted_price_types) - PRICE_TYPES
        if unknown:
            raise Invalid(
                f"restricted_price_types: unknown {sorted(unknown)}; use {sorted(PRICE_TYPES)}"
            )
    before = _factoring(customer)
    if stake_factor is not None:
        customer.stake_factor = stake_factor
    if restricted_sports is not None:
        customer.restricted_sports = sorted(set(restricted_sports))
    if restricted_price_types is not None:
        customer.restricted_price_types = sorted(set(restricted_price_types))
    if inherit_linked_factor is not None:
        customer.inherit_linked_factor = inherit_linked_factor
    after = _factoring(customer)
    if after == before:
        return customer
    customer.updated_at = utcnow()
    session.add(customer)
    session.add(
        FactorChange(
            customer_id=customer_id, actor=actor.name, reason=reason, before=before, after=after
        )
    )
    audit.record(
        session,
        actor=actor.name,
        action="customer.factoring",
        entity="customer",
        entity_id=customer_id,
        before=before,
        after=after | {"reason": reason},
    )
    return customer


def _factoring(c: Customer) -> dict[str, object]:
    return {
        "stake_factor": c.stake_factor,
        "restricted_sports": list(c.restricted_sports or []),
        "restricted_price_types": list(c.restricted_price_types or []),
        "inherit_linked_factor": c.inherit_linked_factor,
    }


def factoring_history(*, session: Session, customer_id: int) -> list[FactorChange]:
    return list(
        session.exec(
            select(FactorChange)
            .where(FactorChange.customer_id == customer_id)
            .order_by(col(FactorChange.at).desc(), col(FactorChange.id).desc())
        ).all()
    )


def linked_customer_ids(*, session: Session, customer_id: int) -> list[int]:
    """Other accounts whose known slips share a handwriting cluster with this customer's."""
    from store.clustering import cluster_customers, clusters_of_customer

    linked: set[int] = set()
    for cluster_id in clusters_of_customer(session=session, customer_id=customer_id):
        linked.update(cluster_customers(session=session, cluster_id=cluster_id))
    linked.discard(customer_id)
    return sorted(linked)


def effective_factor(*, session: Session, customer: Customer) -> tuple[float, list[int]]:
    """The strictest factor among the customer and the accounts linked to it by handwriting,
    unless an analyst has turned inheritance off.  Returns the factor and the linked ids."""
    linked = linked_customer_ids(session=session, customer_id=customer.id)  # type: ignore[arg-type]
    if not customer.inherit_linked_factor or not linked:
        return customer.stake_factor, linked
    others = [c for c in (session.get(Customer, i) for i in linked) if c is not None]
    return min([customer.stake_factor, *(c.stake_factor for c in others)]), linked


def export_csv(*, session: Session) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    for c in session.exec(select(Customer).order_by(col(Customer.external_ref))).all():
        writer.writerow(
            [
                c.external_ref,
                f"{c.stake_factor:g}",
                ";".join(c.restricted_sports or []),
                ";".join(c.restricted_price_types or []),
            ]
        )
    return out.getvalue()


def import_csv(*, session: Session, text: str, actor: Actor) -> dict[str, int]:
    """Apply a factoring CSV (header as ``CSV_HEADER``).  All or nothing: the first bad row
    raises ``Invalid`` naming its line, and the caller's transaction rolls back."""
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or "external_ref" not in reader.fieldnames:
        raise Invalid(f"csv: header must be {','.join(CSV_HEADER)}")
    changed = unchanged = 0
    for line, row in enumerate(reader, start=2):
        ref = (row.get("external_ref") or "").strip()
        customer = session.exec(select(Customer).where(Customer.external_ref == ref)).first()
        if customer is None:
            raise Invalid(f"csv line {line}: unknown customer {ref!r}")
        try:
            factor = float(row["stake_factor"]) if row.get("stake_factor") else None
        except ValueError:
            raise Invalid(
                f"csv line {line}: stake_factor {row['stake_factor']!r} is not a number"
            ) from None
        split = lambda v: [s.strip() for s in (v or "").split(";") if s.strip()]  # noqa: E731
        before = _factoring(customer)
        try:
            set_factoring(
                session=session,
                customer_id=customer.id,  # type: ignore[arg-type]
                actor=actor,
                reason=f"CSV import line {line}",
                stake_factor=factor,
                restricted_sports=split(row.get("restricted_sports")),
                restricted_price_types=split(row.get("restricted_price_types")),
            )
        except Invalid as exc:
            raise Invalid(f"csv line {line}: {exc.detail}") from None
        if _factoring(customer) == before:
            unchanged += 1
        else:
            changed += 1
    return {"changed": changed, "unchanged": unchanged}
