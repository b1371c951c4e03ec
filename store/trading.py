"""Events and results, settlement, factoring history, exposure, prices and the
self-exclusion register: the bet lifecycle around the slip."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from store.models import _enum, utcnow


class EventStatus(enum.StrEnum):
    scheduled = "scheduled"
    off = "off"
    result = "result"
    abandoned = "abandoned"


class Event(SQLModel, table=True):
    """A race or match.  A leg is linked to its event by the feed's stable id
    (``external_id`` = the leg's ``event_ref``) when both have one, otherwise by ``name`` and
    start date."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("name", "start_time", name="uq_events_name_start"),)
    id: int | None = Field(default=None, primary_key=True)
    external_id: str | None = Field(default=None, max_length=100, unique=True)
    sport: str = Field(max_length=64, index=True)
    name: str = Field(max_length=200, index=True)
    venue: str | None = Field(default=None, max_length=100)
    start_time: datetime = Field(index=True)
    status: EventStatus = Field(default=EventStatus.scheduled, sa_type=_enum(EventStatus))
    place_fraction: float = Field(default=0.25, gt=0, le=1)
    places: int = Field(default=3, ge=1, le=10)
    created_at: datetime = Field(default_factory=utcnow, nullable=False)


class SelectionResult(SQLModel, table=True):
    """The result of one selection in an event; a change re-settles its bets."""

    __tablename__ = "selection_results"
    __table_args__ = (UniqueConstraint("event_id", "selection_key", name="uq_results_sel"),)
    id: int | None = Field(default=None, primary_key=True)
    event_id: int = Field(foreign_key="events.id", index=True)
    selection: str = Field(max_length=200)
    selection_key: str = Field(max_length=200, index=True)
    result: str = Field(max_length=16)  # won | placed | lost | void
    dead_heat: float = Field(default=1.0, gt=0, le=1)
    rule4: float = Field(default=0.0, ge=0, lt=1)
    starting_price: float | None = Field(default=None, gt=1.0)
    updated_at: datetime = Field(default_factory=utcnow, nullable=False)


class FactorChange(SQLModel, table=True):
    """History of a customer's stake factor and restrictions: who, when, why, before/after."""

    __tablename__ = "factor_changes"
    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customers.id", index=True)
    at: datetime = Field(default_factory=utcnow, nullable=False)
    actor: str = Field(max_length=100)
    reason: str = Field(default="", max_length=500)
    before: dict | None = Field(default=None, sa_column=Column(JSON))  # type: ignore[type-arg]
    after: dict | None = Field(default=None, sa_column=Column(JSON))  # type: ignore[type-arg]


class PriceSnapshot(SQLModel, table=True):
    """One bookmaker's price for a selection at a moment (the odds feed)."""

    __tablename__ = "price_snapshots"
    id: int | None = Field(default=None, primary_key=True)
    selection_key: str = Field(max_length=200, index=True)
    selection: str = Field(max_length=200)
    event: str = Field(default="", max_length=200)
    event_ref: str | None = Field(default=None, max_length=100, index=True)
    bookmaker: str = Field(max_length=64)
    odds: float = Field(gt=1.0)
    at: datetime = Field(default_factory=utcnow, index=True, nullable=False)


class SelfExclusion(SQLModel, table=True):
    """An entry of the multi-operator register or the operator's own exclusions."""

    __tablename__ = "self_exclusions"
    __table_args__ = (UniqueConstraint("source", "reference", name="uq_self_exclusions_ref"),)
    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=32)  # multi_operator | own
    reference: str = Field(max_length=64)
    name: str | None = Field(default=None, max_length=200)
    nominated_shops: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    starts_on: datetime
    ends_on: datetime | None = None
    customer_id: int | None = Field(default=None, foreign_key="customers.id", index=True)
    reinstatement_requested_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow, nullable=False)
