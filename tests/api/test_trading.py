"""Events and results settle bets; factoring with history; exposure; the counter check."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

from sqlmodel import select

from store.exposure import selection_liability
from store.models import AuditEntry, utcnow
from store.trading import FactorChange
from tests.conftest import auth
from tests.factories import make_customer, make_shop

START = "2026-11-22T15:15:00Z"


def _event(client, name="3.15 Ascot", **kw):
    resp = client.post(
        "/events", json={"sport": "Horse Racing", "name": name, "start_time": START} | kw
    )
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def _bet(client, *, selection, odds, stake=10.0, each_way=False, event="3.15 Ascot", **kw):
    legs = [
        {
            "sport": "Horse Racing",
            "event": event,
            "event_start": START,
            "selection": selection,
            "odds": odds,
        }
    ]
    resp = client.post("/bets", json={"stake": stake, "each_way": each_way, "legs": legs} | kw)
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def test_results_settle_bets_and_a_correction_resettles(client, session):
    event_id = _event(client)
    winner = _bet(client, selection="Golden Arrow", odds=5.0)
    each_way = _bet(client, selection="Red Rum", odds=11.0, stake=5.0, each_way=True)
    loser = _bet(client, selection="Slow Coach", odds=3.0)
    other_race = _bet(client, selection="Golden Arrow", odds=5.0, event="4.00 Ascot")
    resp = client.post(
        f"/events/{event_id}/results",
        json={
            "results": [
                {"selection": "golden arrow", "result": "won"},
                {"selection": "Red Rum", "result": "placed"},
            ]
        },
    )
    assert resp.status_code == 200, resp.text
    assert sorted(resp.json()["settled_bets"]) == sorted([winner, each_way, loser])
    got = {b: client.get(f"/bets/{b}").json() for b in (winner, each_way, loser, other_race)}
    assert (got[winner]["status"], got[winner]["returns"]) == ("won", 50.0)
    assert (got[each_way]["status"], got[each_way]["returns"]) == ("placed", 17.5)
    assert (got[loser]["status"], got[loser]["returns"]) == ("lost", 0.0)
    assert got[other_race]["status"] == "open"
    # the stewards reverse it: Red Rum won, Golden Arrow second
    resp = client.post(
        f"/events/{event_id}/results",
        json={
            "results": [
                {"selection": "Golden Arrow", "result": "placed"},
                {"selection": "Red Rum", "result": "won"},
            ]
        },
    )
    assert sorted(resp.json()["settled_bets"]) == sorted([winner, each_way])
    assert client.get(f"/bets/{winner}").json()["status"] == "lost"
    assert client.get(f"/bets/{each_way}").json()["returns"] == 72.5
    session.expire_all()
    actions = [
        e.action
        for e in session.exec(
            select(AuditEntry).where(
                AuditEntry.entity == "bet", AuditEntry.entity_id == str(winner)
            )
        )
    ]
    assert actions == ["bet.create", "bet.settle", "bet.resettle"]


def test_abandoned_event_voids_and_bad_results_are_refused(client):
    event_id = _event(client, name="2.10 Kempton")
    bet = _bet(client, selection="Mud Lark", odds=4.0, event="2.10 Kempton")
    bad = client.post(
        f"/events/{event_id}/results",
        json={"results": [{"selection": "Mud Lark", "result": "third"}]},
    )
    assert bad.status_code == 422
    assert (
        client.post(
            "/events/999/results", json={"results": [{"selection": "x", "result": "won"}]}
        ).status_code
        == 404
    )
    assert client.get(f"/bets/{bet}").json()["status"] == "open"
    resp = client.post(
        f"/events/{event_id}/results",
        json={"results": [{"selection": "n/a", "result": "void"}], "abandoned": True},
    )
    assert resp.json()["settled_bets"] == [bet]
    assert (
        client.get(f"/bets/{bet}").json() | {}
        and client.get(f"/bets/{bet}").json()["returns"] == 10.0
    )


def test_legs_settle_by_the_feeds_event_id_and_by_name_without_one(client):
    def bet(event: str, ref: str | None) -> int:
        leg = {"sport": "Horse Racing", "event": event, "event_start": START,
               "selection": "Golden Arrow", "odds": 3.0, "event_ref": ref}  # fmt: skip
        resp = client.post("/bets", json={"stake": 10.0, "legs": [leg]})
        assert resp.status_code == 201 and resp.json()["legs"][0]["event_ref"] == ref
        return resp.json()["id"]

    ascot = _event(client, external_id="feed-1001")
    by_id = bet("Ascot 15:15", "feed-1001")  # the till typed the name its own way
    by_name = bet("3.15 Ascot", None)
    # same name, but the feed says another meeting's race: never settled from this event
    elsewhere = bet("3.15 Ascot", "feed-2002")
    resp = client.post(
        f"/events/{ascot}/results",
        json={"results": [{"selection": "Golden Arrow", "result": "won"}]},
    )
    assert sorted(resp.json()["settled_bets"]) == sorted([by_id, by_name])
    assert client.get(f"/bets/{elsewhere}").json()["status"] == "open"
    other = _event(client, name="3.15 Ascot (IRE)", external_id="feed-2002")
    resp = client.post(
        f"/events/{other}/results",
        json={"results": [{"selection": "Golden Arrow", "result": "lost"}]},
    )
    assert resp.json()["settled_bets"] == [elsewhere]
    assert client.get(f"/bets/{elsewhere}").json()["status"] == "lost"
    assert client.get(f"/bets/{by_id}").json()["status"] == "won"
    # the feed's id is unique and can be looked up
    dup = client.post(
        "/events",
        json={
            "sport": "Horse Racing",
            "name": "x",
            "start_time": START,
            "external_id": "feed-1001",
        },
    )
    assert dup.status_code == 409 and dup.json()["detail"].startswith("external_id:")
    [found] = client.get("/events", params={"external_id": "feed-2002"}).json()
    assert found["id"] == other


def test_price_moves_per_event_id(client):
    old = (utcnow() - timedelta(hours=3)).isoformat()
    prices = [
        {"selection": "Trap 1", "event_ref": ref, "bookmaker": b, "odds": o, "at": at}
        for ref, series in {"dog-1": (5.0, 2.0), "dog-2": (5.0, 5.0)}.items()
        for b in ("A", "B")
        for o, at in zip(series, [old, utcnow().isoformat()], strict=True)
    ]
    assert client.post("/odds", json={"prices": prices}).status_code == 201
    first = client.get("/odds/trap 1", params={"event_ref": "dog-1"}).json()
    assert len(first["prices"]) == 4 and abs(first["drop"]["median_drop"] - 0.75) < 1e-9
    second = client.get("/odds/trap 1", params={"event_ref": "dog-2"}).json()
    assert second["drop"]["median_drop"] == 0.0


def test_exposure_lists_the_largest_liabilities(client, session):
    _bet(client, selection="Golden Arrow", odds=5.0, stake=100)  # liability 400
    _bet(client, selection="Golden Arrow", odds=5.0, stake=10)  # 40
    _bet(client, selection="Red Rum", odds=2.0, stake=50)  # 50
    # the same name in another race is another selection
    _bet(client, selection="Golden Arrow", odds=3.0, stake=10, event="4.00 Ascot")  # 20
    rows = client.get("/exposure", params={"by": "selection"}).json()
    assert rows[0] == {
        "selection": "golden arrow",
        "event": "3.15 Ascot",
        "event_key": "3.15 ascot",
        "open_bets": 2,
        "stakes": 110.0,
        "liability": 440.0,
    }
    assert rows[1]["selection"] == "red rum" and rows[1]["liability"] == 50.0
    assert (rows[2]["event"], rows[2]["liability"]) == ("4.00 Ascot", 20.0)
    events = client.get("/exposure", params={"by": "event"}).json()
    assert [(e["event"], e["open_bets"], e["liability"]) for e in events] == [
        ("3.15 Ascot", 3, 490.0),
        ("4.00 Ascot", 1, 20.0),
    ]
    shops = client.get("/exposure", params={"by": "shop"}).json()
    assert shops == [{"shop": None, "open_bets": 4, "stakes": 170.0, "liability": 510.0}]
    # what the counter check adds a new bet's liability to
    liability = partial(selection_liability, session=session, selection_key="golden arrow")
    assert liability(event="3.15 ascot") == 440.0 and liability(event="4.00 Ascot") == 20.0
    assert liability() == 460.0 and liability(event_ref="feed-9") == 0.0
    assert client.get("/exposure", params={"by": "planet"}).status_code == 422


def test_factoring_with_history_and_csv_round_trip(client, session):
    c = make_customer(session, external_ref="C-F1")
    resp = client.put(
        f"/customers/{c.id}/factoring",
        json={
            "stake_factor": 0.2,
            "restricted_price_types": ["early"],
            "reason": "sharp on early prices",
        },
    )
    assert resp.status_code == 200, resp.text
    body = client.get(f"/customers/{c.id}/factoring").json()
    assert body["stake_factor"] == 0.2 and body["history"][0]["reason"] == "sharp on early prices"
    assert (
        client.put(
            f"/customers/{c.id}/factoring", json={"stake_factor": 0.5, "reason": ""}
        ).status_code
        == 422
    )
    assert (
        client.put(
            f"/customers/{c.id}/factoring",
            json={"restricted_price_types": ["lucky"], "reason": "x"},
        ).status_code
        == 422
    )
    csv_text = client.get("/factoring.csv").text
    assert "C-F1,0.2,,early" in csv_text
    resp = client.post(
        "/factoring/import",
        content="external_ref,stake_factor,restricted_sports,"
        "restricted_price_types\nC-F1,0.1,Tennis;Golf,early\n",
        headers={"content-type": "text/csv"},
    )
    assert resp.json() == {"changed": 1, "unchanged": 0}
    resp = client.post(
        "/factoring/import",
        content="external_ref,stake_factor\nC-F1,0.3\nNOPE,1\n",
        headers={"content-type": "text/csv"},
    )
    assert resp.status_code == 422 and "line 3" in resp.json()["detail"]
    session.expire_all()
    assert (
        client.get(f"/customers/{c.id}").json()["stake_factor"] == 0.1
    )  # the bad file changed nothing
    assert len(session.exec(select(FactorChange)).all()) == 2


def test_check_accepts_refers_and_rejects(client, session, keys):
    shop = make_shop(session)
    till = auth(keys.shop(shop.id))
    normal = make_customer(session)
    factored = make_customer(session, stake_factor=0.1)
    excluded = make_customer(session, status="self_excluded")
    bet = {
        "stake": 20,
        "legs": [{"sport": "Horse Racing", "selection": "Golden Arrow", "odds": 3.0}],
    }

    def check(**kw):
        resp = client.post("/checks", json=bet | kw, headers=till)
        assert resp.status_code == 200, resp.text
        return resp.json()

    ok = check(customer_id=normal.id)
    assert (ok["decision"], ok["max_stake"], ok["reasons"]) == ("accept", 500.0, [])
    refer = check(customer_id=factored.id, stake=80)
    assert refer["decision"] == "refer" and refer["max_stake"] == 50.0
    assert "over the maximum 50.00" in refer["reasons"][0]
    no = check(customer_id=excluded.id)
    assert (
        no["decision"] == "reject" and no["max_stake"] == 0 and "self-excluded" in no["reasons"][0]
    )
    big = check(stake=400, legs=[{"sport": "Horse Racing", "selection": "Outsider", "odds": 101.0}])
    assert big["decision"] == "refer" and "potential win" in big["reasons"][0]
    assert big["max_stake"] == 250.0
    resp = client.post("/checks", content=b"{", headers=till | {"content-type": "application/json"})
    assert resp.status_code == 422 and "malformed" in resp.json()["detail"]
    resp = client.post("/checks", json={"stake": -1, "legs": []}, headers=till)
    assert resp.status_code == 422 and resp.json()["detail"].startswith("bet.")


def test_odds_feed_price_drop_and_steamers(client):
    early = _bet(client, selection="Quick Silver", odds=11.0, stake=20)
    _bet(client, selection="Quick Silver", odds=4.0, stake=20)
    prices = [
        {"selection": "Quick Silver", "bookmaker": b, "odds": o, "at": at}
        for b, series in {"A": (11.0, 5.0), "B": (10.0, 4.5), "C": (12.0, 6.0)}.items()
        for o, at in zip(series, [(utcnow() - timedelta(hours=3)).isoformat(), None], strict=True)
    ]
    # the first snapshot of each bookmaker is 3 hours old, the second is now
    prices = [p if p["at"] else {k: v for k, v in p.items() if k != "at"} for p in prices]
    resp = client.post("/odds", json={"prices": prices})
    assert resp.status_code == 201 and resp.json()["stored"] == 6
    [move] = resp.json()["price_drops"]
    assert (move["selection"], move["bookmakers"], move["steamer_bet_ids"]) == (
        "Quick Silver",
        3,
        [early],
    )
    # the staff feed hears of it once a day, however often the feed repeats the price
    again = client.post(
        "/odds", json={"prices": [{"selection": "quick silver", "bookmaker": "A", "odds": 5.0}]}
    )
    assert len(again.json()["price_drops"]) == 1
    feed = client.get("/notifications").json()["items"]
    [note] = [n for n in feed if n["kind"] == "price_drop"]
    assert note["message"].startswith("Quick Silver: price fell 60% at 3 bookmakers (11 -> 5)")
    assert note["message"].endswith("1 open bet(s) taken at the long price")
    body = client.get("/odds/quick silver", params={"hours": 24 * 3}).json()
    drop = body["drop"]
    assert drop["bookmakers"] == 3 and drop["to_odds"] == 5.0
    # winnings part fell A (10 -> 4) 60%, B (9 -> 3.5) 61%, C (11 -> 5) 55%: median 60%
    assert abs(drop["median_drop"] - 0.6) < 1e-9
    assert body["bets_before_drop"] == [early]
    assert (
        client.post(
            "/odds", json={"prices": [{"selection": "x", "bookmaker": "A", "odds": 0.5}]}
        ).status_code
        == 422
    )


def test_self_exclusion_register_import_expiry_and_cooling_off(client, session):
    c = make_customer(session, external_ref="C-SE")
    csv_text = (
        "reference,name,nominated_shops,start,end,customer_ref\n"
        "MOSES-1,Sam Smith,S01;S02,2026-01-01,2026-06-01,C-SE\n"
        "MOSES-2,Jo Bloggs,,2026-01-01,,\n"
    )
    resp = client.post(
        "/self-exclusions/import", content=csv_text, headers={"content-type": "text/csv"}
    )
    assert resp.json() == {"imported": 2, "linked_to_customers": 1}
    # MOSES-1 ended on 1 June: no change of status until reinstatement is asked for
    assert client.get(f"/customers/{c.id}").json()["status"] == "active"
    own = client.post(
        "/self-exclusions",
        json={"reference": "OWN-1", "customer_id": c.id, "start": "2026-11-01T00:00:00Z"},
    )
    assert own.status_code == 201
    assert client.get(f"/customers/{c.id}").json()["status"] == "self_excluded"
    bad = client.post(
        "/self-exclusions/import",
        content="reference,start\nR-9,not-a-date\n",
        headers={"content-type": "text/csv"},
    )
    assert bad.status_code == 422 and "line 2" in bad.json()["detail"]
    still = client.post(f"/self-exclusions/{own.json()['id']}/reinstatement")
    assert still.status_code == 422 and "still in force" in still.json()["detail"]


def test_reports_daily_staff_bets_and_pnl(client, session):
    from datetime import UTC, datetime, timedelta

    yesterday = (datetime.now(UTC) - timedelta(days=1)).date()
    noon = f"{yesterday.isoformat()}T12:00:00Z"
    resp = client.post(
        "/events", json={"sport": "Horse Racing", "name": "5.30 Wolves", "start_time": noon}
    )
    event_id = resp.json()["id"]
    for selection, odds, stake in (("Night Owl", 3.0, 10), ("Day Tripper", 2.0, 30)):
        legs = [
            {
                "sport": "Horse Racing",
                "event": "5.30 Wolves",
                "event_start": noon,
                "selection": selection,
                "odds": odds,
            }
        ]
        assert (
            client.post("/bets", json={"stake": stake, "legs": legs, "placed_at": noon}).status_code
            == 201
        )
    client.post(
        f"/events/{event_id}/results",
        json={"results": [{"selection": "Night Owl", "result": "won"}]},
    )
    day = client.get("/reports/daily", params={"day": yesterday.isoformat()}).json()
    assert (day["bets"], day["stakes"], day["returns"]) == (2, 40.0, 30.0)
    assert day["hold_percent"] == 25.0 and day["anonymous_bets"] == 2
    staff = client.get("/reports/staff").json()
    assert any(r["action"] == "result.record" and r["count"] == 1 for r in staff)
    day_csv = client.get("/reports/daily", params={"day": yesterday.isoformat(), "format": "csv"})
    assert day_csv.headers["content-type"].startswith("text/csv")
    lines = day_csv.text.splitlines()
    assert lines[0] == "section,key,value" and "totals,hold_percent,25.0" in lines
    assert "totals,bets,2" in lines
    staff_csv = client.get("/reports/staff", params={"format": "csv"}).text.splitlines()
    assert staff_csv[0] == "actor,action,count" and any(",result.record,1" in r for r in staff_csv)
    assert client.get("/reports/staff", params={"format": "xml"}).status_code == 422
    csv_text = client.get(
        "/reports/bets", params={"day": yesterday.isoformat(), "format": "csv"}
    ).text
    assert csv_text.splitlines()[0].startswith("id,placed_at") and len(csv_text.splitlines()) == 3
    assert client.get("/reports/bets", params={"day": "2020-01-01"}).status_code == 422
    pnl = client.get("/reports/pnl", params={"by": "day", "days": 30}).json()
    assert [(r["day"], r["profit"]) for r in pnl] == [(yesterday.isoformat(), 10.0)]


def test_linked_accounts_inherit_the_strictest_factor_unless_overridden(client, session, keys):
    from tests.rules import scenario

    scenario.activate(session)
    sharp = make_customer(session, stake_factor=0.1)
    alias = make_customer(session)
    bets = [scenario.bet(session, at=scenario.T0, stake=5, customer=c.id) for c in (sharp, alias)]
    cluster_id = scenario.cluster(session, [(b, 0.95) for b in bets])
    view = client.get(f"/customers/{alias.id}/factoring").json()
    assert view["linked_customers"] == [sharp.id] and view["effective_stake_factor"] == 0.1
    till = auth(keys.shop(make_shop(session).id))
    body = {
        "customer_id": alias.id,
        "stake": 80,
        "legs": [{"sport": "Horse Racing", "selection": "Golden Arrow", "odds": 3.0}],
    }
    check = client.post("/checks", json=body, headers=till).json()
    assert check["decision"] == "refer" and check["max_stake"] == 50.0
    assert (
        client.put(
            f"/customers/{alias.id}/factoring",
            json={"inherit_linked_factor": False, "reason": "different person"},
        ).status_code
        == 200
    )
    assert client.get(f"/customers/{alias.id}/factoring").json()["effective_stake_factor"] == 1.0
    assert client.post("/checks", json=body, headers=till).json()["decision"] == "accept"
    # P&L per handwriting cluster
    for b in bets:
        b.status, b.returns = "lost", 0.0
        session.add(b)
    session.commit()
    pnl = client.get("/reports/pnl", params={"by": "cluster", "days": 400}).json()
    assert pnl == [
        {"cluster": cluster_id, "bets": 2, "stakes": 10.0, "returns": 0.0, "profit": 10.0}
    ]
