"""store.db.add_unique: a second row with the same unique key is a 409 Conflict with the
caller's message, and the transaction stays usable (the first row is kept)."""

from __future__ import annotations

import pytest
from sqlmodel import select

from store import users
from store.access import SYSTEM
from store.errors import Conflict
from store.models import Role, Shop, ShopCreate


def test_duplicate_username_is_a_conflict_and_keeps_the_first(session):
    first = users.create_user(
        session=session, username="ann", password="long enough pw 1", role=Role.analyst,
        actor=SYSTEM,
    )  # fmt: skip
    with pytest.raises(Conflict, match="^username: 'ann' already exists$"):
        users.create_user(
            session=session, username="ann", password="long enough pw 2", role=Role.ml,
            actor=SYSTEM,
        )  # fmt: skip
    session.commit()  # the savepoint rolled back only the duplicate
    [kept] = session.exec(select(users.User).where(users.User.username == "ann")).all()
    assert kept.id == first.id and kept.role == Role.analyst


def test_duplicate_shop_code_is_a_conflict_and_the_session_goes_on(session):
    from store import customers

    customers.create_shop(session=session, shop_in=ShopCreate(code="S9", name="A"), actor=SYSTEM)
    with pytest.raises(Conflict, match="^code: a shop with code 'S9' already exists$"):
        customers.create_shop(
            session=session, shop_in=ShopCreate(code="S9", name="B"), actor=SYSTEM
        )
    customers.create_shop(session=session, shop_in=ShopCreate(code="S10", name="C"), actor=SYSTEM)
    session.commit()
    codes = sorted(s.code for s in session.exec(select(Shop)).all())
    assert codes == ["S10", "S9"]


def test_duplicate_event_name_and_start_is_409_through_the_api(client):
    event = {"sport": "Tennis", "name": "A v B", "start_time": "2026-11-22T15:15:00Z"}
    assert client.post("/events", json=event).status_code == 201
    dup = client.post("/events", json=event)
    assert dup.status_code == 409 and dup.json()["detail"].startswith("name: event 'A v B'")
    assert len(client.get("/events").json()) == 1
