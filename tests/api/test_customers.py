from __future__ import annotations

from sqlmodel import select

from store.models import AuditEntry
from tests.conftest import auth


def test_customer_create_read_update_with_audit(client, session):
    resp = client.post(
        "/customers",
        json={
            "external_ref": "C-1",
            "name": "Ann",
            "stake_factor": 0.5,
            "restricted_sports": ["Tennis"],
        },
    )
    assert resp.status_code == 201, resp.text
    cid = resp.json()["id"]
    assert client.get(f"/customers/{cid}").json()["restricted_sports"] == ["Tennis"]
    resp = client.patch(f"/customers/{cid}", json={"status": "self_excluded", "stake_factor": 0.1})
    assert resp.status_code == 200 and resp.json()["status"] == "self_excluded"
    assert resp.json()["stake_factor"] == 0.1
    session.expire_all()
    update = session.exec(select(AuditEntry).where(AuditEntry.action == "customer.update")).one()
    assert update.before == {"status": "active", "stake_factor": 0.5}


def test_customer_bad_input(client):
    assert client.post("/customers", json={"external_ref": "C-2"}).status_code == 201
    dup = client.post("/customers", json={"external_ref": "C-2"})
    assert dup.status_code == 409 and "external_ref" in dup.json()["detail"]
    assert (
        client.post("/customers", json={"external_ref": "X", "stake_factor": -1}).status_code == 422
    )
    assert (
        client.post("/customers", json={"external_ref": "Y", "status": "gone"}).status_code == 422
    )
    assert client.get("/customers/999").status_code == 404
    assert client.patch("/customers/999", json={"name": "x"}).status_code == 404
    assert len(client.get("/customers").json()) == 1


def test_shops_create_read_update_and_roles(client, keys):
    resp = client.post("/shops", json={"code": "S1", "name": "High St", "region": "North"})
    assert resp.status_code == 201
    sid = resp.json()["id"]
    assert client.post("/shops", json={"code": "S1", "name": "Dup"}).status_code == 409
    assert client.patch(f"/shops/{sid}", json={"name": "Market Sq"}).json()["name"] == "Market Sq"
    assert client.get(f"/shops/{sid}").json()["region"] == "North"
    assert client.get("/shops/77").status_code == 404
    till = auth(keys.shop(sid))
    assert client.post("/shops", json={"code": "S2", "name": "x"}, headers=till).status_code == 403
    assert client.get("/customers", headers=till).status_code == 403
    assert client.get("/shops", headers=till).status_code == 200


def test_health(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"
