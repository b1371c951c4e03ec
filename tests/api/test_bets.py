from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import select

from store.models import AuditEntry, Bet
from tests.conftest import auth
from tests.factories import make_customer, make_shop

MINIMAL = {
    "amount": 10.0,
    "betType": "Win",
    "sport": "Tennis",
    "description": "Federer vs Nadal",
    "odds": 1.5,
    "customerId": 1,
}


def test_minimal_shape_is_stored_with_its_id(client, session):
    customer = make_customer(session)
    resp = client.post("/bets", json=MINIMAL | {"customerId": customer.id})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["id"] > 0
    assert body["stake"] == 10.0 and body["odds"] == 1.5 and body["customer_id"] == customer.id
    assert body["sport"] == "Tennis" and body["description"] == "Federer vs Nadal"
    assert body["potential_return"] == 15.0
    assert body["legs"][0]["selection"] == "Federer vs Nadal"
    assert client.get(f"/bets/{body['id']}").json() == body


def test_full_shape_each_way_yankee_total(client, session):
    shop = make_shop(session)
    legs = [
        {
            "sport": "Horse Racing",
            "event": f"{h}.15 Ascot",
            "selection": f"Runner {h}",
            "odds": 3.0 + h,
            "event_start": "2026-11-22T14:15:00Z",
        }
        for h in range(1, 5)
    ]
    resp = client.post(
        "/bets",
        json={
            "shop_id": shop.id,
            "stake": 0.5,
            "bet_type": "Yankee",
            "each_way": True,
            "legs": legs,
            "placed_at": "2026-11-22T10:00:00+01:00",
        },
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["anonymous"] is True
    assert body["bet_type"] == "yankee" and body["total_stake"] == 11.0  # 11 lines x 2 x 0.50
    assert body["placed_at"].startswith("2026-11-22T09:00:00")
    assert [leg["position"] for leg in body["legs"]] == [0, 1, 2, 3]


def _assert_nothing_written(session, before: int) -> None:
    session.expire_all()
    assert len(session.exec(select(Bet)).all()) == before


def test_bad_bets_are_refused_with_the_field_named(client, session):
    cases = [
        ({"betType": "Win", "sport": "Tennis", "odds": 1.5}, "stake"),
        (MINIMAL | {"amount": -5}, "stake"),
        (MINIMAL | {"amount": 0}, "stake"),
        (MINIMAL | {"amount": "ten"}, "stake"),
        (MINIMAL | {"odds": 0.5, "customerId": None}, "odds"),
        ({"stake": 5, "legs": []}, "leg"),
        ({"stake": 5, "legs": [{"sport": "Golf"}]}, "selection"),
        (
            {"stake": 5, "bet_type": "roulette", "legs": [{"sport": "x", "selection": "y"}]},
            "bet_type",
        ),
    ]
    for payload, field in cases:
        resp = client.post("/bets", json=payload)
        assert resp.status_code == 422, (payload, resp.text)
        assert field in resp.text, (payload, resp.text)
    _assert_nothing_written(session, 0)


def test_nan_and_infinite_stakes_are_refused(client, session):
    for raw in ('{"amount": NaN, "sport": "Tennis"}', '{"amount": Infinity, "sport": "Tennis"}'):
        resp = client.post("/bets", content=raw, headers={"content-type": "application/json"})
        assert resp.status_code == 422, resp.text
    _assert_nothing_written(session, 0)


def test_malformed_json_is_a_4xx_naming_the_problem(client, session):
    resp = client.post(
        "/bets", content=b'{"amount": 10,', headers={"content-type": "application/json"}
    )
    assert resp.status_code == 422
    assert "JSON" in resp.text
    _assert_nothing_written(session, 0)


def test_unknown_customer_and_shop_are_404_and_write_nothing(client, session):
    resp = client.post("/bets", json=MINIMAL | {"customerId": 999})
    assert resp.status_code == 404 and "customer_id" in resp.json()["detail"]
    resp = client.post("/bets", json=MINIMAL | {"customerId": None, "shopId": 77})
    assert resp.status_code == 404 and "shop_id" in resp.json()["detail"]
    assert client.get("/bets/12345").status_code == 404
    _assert_nothing_written(session, 0)
    session.expire_all()
    assert session.exec(select(AuditEntry).where(AuditEntry.action == "bet.create")).all() == []


def test_feed_filters_and_pagination(client, session):
    north, south = make_shop(session), make_shop(session)
    risky = make_customer(session, risk_category="high")
    normal = make_customer(session)
    t0 = datetime(2026, 11, 20, 12, tzinfo=UTC)

    def post(**kw):
        data = {"stake": 5.0, "legs": [{"sport": "Horse Racing", "selection": "Golden Arrow"}]}
        data |= kw
        if "placed_at" in data:
            data["placed_at"] = data["placed_at"].isoformat()
        resp = client.post("/bets", json=data)
        assert resp.status_code == 201, resp.text
        return resp.json()["id"]

    a = post(shop_id=north.id, customer_id=risky.id, stake=50, placed_at=t0)
    b = post(shop_id=south.id, customer_id=normal.id, stake=2, placed_at=t0 + timedelta(hours=1))
    c = post(
        shop_id=south.id,
        stake=20,
        placed_at=t0 + timedelta(hours=2),
        legs=[{"sport": "Football", "selection": "Arsenal"}],
    )

    def ids(**params):
        resp = client.get("/bets", params=params)
        assert resp.status_code == 200, resp.text
        return [item["id"] for item in resp.json()["items"]]

    assert ids() == [c, b, a]  # newest first
    assert ids(customer_id=risky.id) == [a]
    assert ids(min_stake=10) == [c, a]
    assert ids(min_stake=3, max_stake=30) == [c]
    assert ids(risk_category="high") == [a]
    assert ids(selection="golden  ARROW") == [b, a]
    assert ids(sport="football") == [c]
    assert ids(shop_id=south.id) == [c, b]
    assert ids(
        placed_from=(t0 + timedelta(minutes=30)).isoformat(),
        placed_to=(t0 + timedelta(minutes=90)).isoformat(),
    ) == [b]
    page = client.get("/bets", params={"limit": 2, "offset": 2}).json()
    assert page["total"] == 3 and [i["id"] for i in page["items"]] == [a]
    assert client.get("/bets", params={"limit": 0}).status_code == 422
    assert client.get("/bets", params={"min_stake": -1}).status_code == 422


def test_a_shop_key_sees_and_writes_only_its_own_shop(client, session, keys):
    mine, other = make_shop(session), make_shop(session)
    till = auth(keys.shop(mine.id))
    resp = client.post("/bets", json=MINIMAL | {"customerId": None}, headers=till)
    assert resp.status_code == 201 and resp.json()["shop_id"] == mine.id
    own = resp.json()["id"]
    resp = client.post(
        "/bets", json=MINIMAL | {"customerId": None, "shopId": other.id}, headers=till
    )
    assert resp.status_code == 403
    theirs = client.post("/bets", json=MINIMAL | {"customerId": None, "shopId": other.id})
    assert client.get(f"/bets/{theirs.json()['id']}", headers=till).status_code == 404
    assert [b["id"] for b in client.get("/bets", headers=till).json()["items"]] == [own]


def test_requests_without_a_valid_key_are_401(client):
    assert client.get("/bets", headers={"X-API-Key": ""}).status_code == 401
    resp = client.get("/bets", headers={"X-API-Key": "sl_wrong"})
    assert resp.status_code == 401 and "invalid" in resp.json()["detail"]


def test_bet_creation_is_audited(client, session):
    bet_id = client.post("/bets", json=MINIMAL | {"customerId": None}).json()["id"]
    session.expire_all()
    entry = session.exec(
        select(AuditEntry).where(AuditEntry.entity == "bet", AuditEntry.entity_id == str(bet_id))
    ).one()
    assert entry.action == "bet.create" and entry.after["stake"] == 10.0
