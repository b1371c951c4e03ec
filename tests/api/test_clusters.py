"""GET /clusters, GET /clusters/{id}, POST /links and the pipeline fields of GET /slips/{id}."""

from __future__ import annotations

import numpy as np
from sqlmodel import select

from store import clustering
from store.access import SYSTEM
from store.clustering import ClusterEvent, ClusterMember, LinkDecision, WriterCluster
from store.models import AuditEntry, Role
from store.slips import store_slip
from tests.conftest import auth
from tests.factories import make_bet, make_customer, make_shop, scan_bytes

VERSION = "api-test-v1"


def _slip(session, *, seed, customer_id=None, shop_id=None) -> int:  # type: ignore[no-untyped-def]
    bet = make_bet(session, customer_id=customer_id, shop_id=shop_id)
    slip, _ = store_slip(
        session=session,
        bet_id=bet.id,
        data=scan_bytes(seed=seed),
        actor=SYSTEM,
        max_bytes=10**7,
        max_pixels=10**7,
    )
    session.commit()
    return int(slip.id)  # type: ignore[arg-type]


def _cluster(session, members: dict[int, float]) -> int:  # type: ignore[no-untyped-def]
    c = WriterCluster(model_version=VERSION, size=len(members))
    session.add(c)
    session.flush()
    for sid, conf in members.items():
        session.add(
            ClusterMember(slip_id=sid, model_version=VERSION, cluster_id=c.id, confidence=conf)
        )
    session.add(ClusterEvent(cluster_id=c.id, kind="created", detail={"slip_ids": list(members)}))
    session.commit()
    return int(c.id)  # type: ignore[arg-type]


def _world(session):  # type: ignore[no-untyped-def]
    clustering.activate_model(session=session, version=VERSION, path=None)
    shop = make_shop(session)
    alice, bob = make_customer(session), make_customer(session)
    a1 = _slip(session, seed=1, customer_id=alice.id, shop_id=shop.id)
    a2 = _slip(session, seed=2, customer_id=alice.id, shop_id=shop.id)
    anon = _slip(session, seed=3, shop_id=shop.id)
    b1 = _slip(session, seed=4, customer_id=bob.id, shop_id=shop.id)
    b2 = _slip(session, seed=5, customer_id=bob.id, shop_id=shop.id)
    linked = _cluster(session, {a1: 0.9, a2: 0.8, anon: 0.7})
    shared = _cluster(session, {b1: 0.95})
    return {
        "alice": alice.id,
        "bob": bob.id,
        "anon": anon,
        "a1": a1,
        "b1": b1,
        "b2": b2,
        "linked": linked,
        "shared": shared,
        "shop": shop.id,
    }


def test_list_and_detail(client, session) -> None:  # type: ignore[no-untyped-def]
    w = _world(session)
    body = client.get("/clusters").json()
    assert body["total"] == 2
    by_id = {c["id"]: c for c in body["items"]}
    assert by_id[w["linked"]]["customers"] == [w["alice"]]
    assert by_id[w["linked"]]["size"] == 3 and by_id[w["linked"]]["candidate_link"] is False
    assert client.get("/clusters", params={"min_size": 2}).json()["total"] == 1
    only_bob = client.get("/clusters", params={"customer_id": w["bob"]}).json()
    assert [c["id"] for c in only_bob["items"]] == [w["shared"]]

    detail = client.get(f"/clusters/{w['linked']}").json()
    assert [m["slip_id"] for m in detail["members"]] == sorted([w["a1"], w["a1"] + 1, w["anon"]])
    assert detail["customer_slips"] == [{"customer_id": w["alice"], "slips": 2}]
    assert detail["attributed"][0]["slip_id"] == w["anon"]
    assert detail["attributed"][0]["customer_id"] == w["alice"]
    assert abs(detail["attributed"][0]["confidence"] - 0.7) < 1e-6
    assert [e["kind"] for e in detail["events"]] == ["created"]
    assert client.get("/clusters/999").status_code == 404


def test_candidate_link_filter(client, session) -> None:  # type: ignore[no-untyped-def]
    w = _world(session)
    # bob's second slip joins alice's cluster: two accounts, one writer
    session.add(
        ClusterMember(
            slip_id=w["b2"], model_version=VERSION, cluster_id=w["linked"], confidence=0.6
        )
    )
    c = session.get(WriterCluster, w["linked"])
    c.size += 1
    session.add(c)
    session.commit()
    body = client.get("/clusters", params={"candidate_link": True}).json()
    assert [c["id"] for c in body["items"]] == [w["linked"]]
    assert body["items"][0]["customers"] == sorted([w["alice"], w["bob"]])


def test_slip_shows_features_and_cluster(client, session) -> None:  # type: ignore[no-untyped-def]
    w = _world(session)
    clustering.store_embedding(
        session=session,
        slip_id=w["a1"],
        model_version=VERSION,
        vector=np.ones(4, np.float32) / 2,
        usable=True,
        quality={"flags": []},
    )
    session.commit()
    body = client.get(f"/slips/{w['a1']}").json()
    assert body["cluster_id"] == w["linked"]
    assert body["features"]["model_version"] == VERSION and body["features"]["dim"] == 4
    assert body["features"]["quality_flags"] == []
    other = client.get(f"/slips/{w['b2']}").json()
    assert other["cluster_id"] is None and other["features"] is None


def test_post_link_is_audited_and_needs_an_analyst(client, session, keys) -> None:  # type: ignore[no-untyped-def]
    w = _world(session)
    shop_key = keys.make(role=Role.shop, shop_id=w["shop"])
    payload = {"slip_a": w["a1"], "slip_b": w["b1"], "decision": "rejected", "note": "different"}
    assert client.post("/links", json=payload, headers=auth(shop_key)).status_code == 403
    resp = client.post("/links", json=payload, headers=auth(keys.analyst))
    assert resp.status_code == 201, resp.text
    assert resp.json()["decision"] == "rejected"
    bad = client.post("/links", json=payload | {"decision": "perhaps"}, headers=auth(keys.analyst))
    assert bad.status_code == 422
    session.expire_all()
    assert len(session.exec(select(LinkDecision)).all()) == 1
    actions = [a.action for a in session.exec(select(AuditEntry)).all()]
    assert "link.rejected" in actions
    assert client.get("/clusters", headers=auth(shop_key)).status_code == 403
