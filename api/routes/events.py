from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlmodel import col, select

from api.deps import AnalystUser, AnyUser, SessionDep
from store import settle
from store.db import add_unique
from store.errors import Conflict, NotFound
from store.models import as_utc, utcnow
from store.trading import Event, EventStatus

router = APIRouter(prefix="/events", tags=["events and results"])


class EventCreate(BaseModel):
    sport: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200, description="as legs name it, e.g. 3.15 Ascot")
    external_id: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="the odds feed's stable event id; legs that carry it as event_ref settle "
        "from this event whatever its name",
    )
    venue: str | None = None
    start_time: datetime
    place_fraction: float = Field(0.25, gt=0, le=1)
    places: int = Field(3, ge=1, le=10)


class ResultIn(BaseModel):
    selection: str = Field(min_length=1, max_length=200)
    result: str = Field(pattern="^(won|placed|lost|void)$")
    dead_heat: float = Field(1.0, gt=0, le=1)
    rule4: float = Field(0.0, ge=0, lt=1)
    starting_price: float | None = Field(None, gt=1.0)


class ResultsIn(BaseModel):
    results: list[ResultIn] = Field(min_length=1, max_length=100)
    abandoned: bool = False


@router.post("", status_code=201)
def create_event(event_in: EventCreate, session: SessionDep, _actor: AnalystUser) -> Event:
    event = Event.model_validate(
        event_in.model_dump() | {"start_time": as_utc(event_in.start_time)}
    )
    if (
        event_in.external_id is not None
        and session.exec(select(Event.id).where(Event.external_id == event_in.external_id)).first()
    ):
        raise Conflict(f"external_id: an event with id {event_in.external_id!r} exists")
    return add_unique(
        session, event, conflict=f"name: event {event_in.name!r} at {event_in.start_time} exists"
    )


@router.get("")
def list_events(
    session: SessionDep,
    _actor: AnyUser,
    sport: str | None = None,
    external_id: str | None = Query(None, max_length=100),
    limit: int = Query(50, ge=1, le=500),
) -> list[Event]:
    query = select(Event)
    if sport:
        query = query.where(Event.sport == sport)
    if external_id:
        query = query.where(Event.external_id == external_id)
    return list(session.exec(query.order_by(col(Event.start_time).desc()).limit(limit)).all())


@router.get("/next-races")
def next_races(session: SessionDep, _actor: AnyUser) -> dict[str, list[Event]]:
    """The next three horse and greyhound races to go off, with their status."""
    now = utcnow()
    out = {}
    for sport in ("Horse Racing", "Greyhounds"):
        out[sport] = list(
            session.exec(
                select(Event)
                .where(
                    Event.sport == sport,
                    Event.start_time >= now,
                    Event.status == EventStatus.scheduled,
                )
                .order_by(col(Event.start_time))
                .limit(3)
            ).all()
        )
    return out


@router.post("/{event_id}/results")
def post_results(
    event_id: int, results_in: ResultsIn, session: SessionDep, actor: AnalystUser
) -> dict[str, object]:
    """Record (or correct) results; affected bets are settled or re-settled at once."""
    event = session.get(Event, event_id)
    if event is None:
        raise NotFound(f"event {event_id} not found")
    if results_in.abandoned:
        event.status = EventStatus.abandoned
        session.add(event)
        session.flush()
        changed = settle.settle_event_bets(session=session, event=event)
        return {
            "event_id": event_id,
            "status": event.status,
            "settled_bets": [b.id for b in changed],
        }
    _, changed = settle.record_results(
        session=session,
        event_id=event_id,
        results=[r.model_dump() for r in results_in.results],
        actor=actor,
    )
    return {"event_id": event_id, "status": "result", "settled_bets": [b.id for b in changed]}
