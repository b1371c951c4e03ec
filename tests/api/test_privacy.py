"""The ml role never sees personal data: every JSON answer and page it can reach, swept over
the access table, carries no customer name, account reference or staff name, while an
analyst asking the same questions does see them (so the sweep can tell)."""

from __future__ import annotations

import html
import re

import pytest
from fastapi.testclient import TestClient

from api.permissions import ALLOWED
from api.privacy import REDACTED, redact
from api.routes.feed import FeedFilter, _new_rows
from store import clustering, users
from store.access import SYSTEM, Actor, create_api_key
from store.models import Role
from tests.conftest import auth
from tests.factories import make_bet, make_cluster, make_customer, make_shop, scan_bytes

PASSWORD = "correct horse battery"
VERSION = "privacy-test-v1"
# what must never reach the ml role: customers' names and refs, staff names, a review note
PERSONAL = ["Zebedee Quill", "ZQ-7781", "Ottoline Marsh", "OM-4410", "till-wilhelmina",
            "ana-reviewer", "Quill's brother"]  # fmt: skip
NOT_JSON = {"GET /slips/{slip_id}/image", "GET /ui/feed/events"}  # an image; an endless stream


def _world(app, session, keys) -> dict[str, int]:  # type: ignore[no-untyped-def]
    clustering.activate_model(session=session, version=VERSION, path=None)
    shop = make_shop(session, name="Corner Shop")
    zeb = make_customer(session, name="Zebedee Quill", external_ref="ZQ-7781")
    ott = make_customer(session, name="Ottoline Marsh", external_ref="OM-4410")
    _, till = create_api_key(session=session, name="till-wilhelmina", role=Role.shop,
                             shop_id=shop.id)  # fmt: skip
    session.commit()
    with TestClient(app) as c:  # staff name on the slips: the till key's name
        c.headers["X-API-Key"] = till
        slips = []
        for seed, customer in enumerate((zeb, ott, zeb)):
            bet = make_bet(session, shop_id=shop.id, customer_id=customer.id)
            up = c.post(f"/bets/{bet.id}/slip", files={"slip": ("s.png", scan_bytes(seed=seed))})
            assert up.status_code == 202, up.text
            slips.append(up.json()["id"])
    cluster_id = make_cluster(session, slips, model_version=VERSION)
    clustering.record_link_decision(session=session, slip_a=slips[0], slip_b=slips[1],
                                    decision="rejected", actor="ana-reviewer",
                                    note="Quill's brother writes like this")  # fmt: skip
    session.commit()
    return {"bet_id": bet.id, "slip_id": slips[0], "cluster_id": cluster_id,  # type: ignore[dict-item]
            "shop_id": shop.id, "version": VERSION}  # fmt: skip


def _browser(app, session, name: str, role: Role) -> TestClient:  # type: ignore[no-untyped-def]
    users.create_user(session=session, username=name, password=PASSWORD, role=role, actor=SYSTEM)
    session.commit()
    browser = TestClient(app)
    token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/login").text).group(1)  # type: ignore[union-attr]
    resp = browser.post("/login", data={"username": name, "password": PASSWORD,
                                        "csrf_token": token}, follow_redirects=False)  # fmt: skip
    assert resp.status_code == 303
    return browser


def _sweep(app, session, keys, world, role: Role) -> dict[str, tuple[int, str]]:  # type: ignore[no-untyped-def]
    """Every GET the role may call, with real ids: operation -> (status, body)."""
    browser = _browser(app, session, f"sweep-{role.value}", role)
    key = getattr(keys, role.value)
    answers = {}
    with browser, TestClient(app, headers=auth(key)) as api:
        for operation, roles in sorted(ALLOWED.items()):
            method, template = operation.split(" ", 1)
            if method != "GET" or role not in roles or operation in NOT_JSON:
                continue
            path = re.sub(r"\{([^}]+)\}", lambda m: str(world.get(m.group(1), 999999)), template)
            resp = (browser if path.startswith("/ui") else api).get(path)
            answers[operation] = (resp.status_code, html.unescape(resp.text))
    return answers


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_no_answer_to_the_ml_role_holds_personal_data(app, session, keys, monkeypatch) -> None:
    from argon2 import PasswordHasher

    monkeypatch.setattr(users, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024,
                                                         parallelism=1))  # fmt: skip
    world = _world(app, session, keys)
    ml = _sweep(app, session, keys, world, Role.ml)
    ok = [op for op, (status, _) in ml.items() if status == 200]
    assert len(ok) >= 12, ml.keys()
    for must in ("GET /slips/{slip_id}", "GET /clusters/{cluster_id}", "GET /bets", "GET /ui/feed",
                 "GET /ui/clusters/{cluster_id}"):  # fmt: skip
        assert must in ok, must
    leaks = [f"{op}: {word}" for op, (_, body) in ml.items() for word in PERSONAL if word in body]
    assert leaks == [], leaks
    # the staff name is there, masked, rather than missing (clients keep their schema)
    assert f'"uploaded_by":"{REDACTED}"' in ml["GET /slips/{slip_id}"][1].replace(" ", "")
    # the same questions from an analyst do show personal data: the sweep can see a leak
    analyst = _sweep(app, session, keys, world, Role.analyst)
    seen = {word for _, body in analyst.values() for word in PERSONAL if word in body}
    assert {"Zebedee Quill", "till-wilhelmina", "ana-reviewer"} <= seen


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_live_feed_rows_for_ml_carry_no_names(session) -> None:
    customer = make_customer(session, name="Zebedee Quill", external_ref="ZQ-7781")
    make_bet(session, customer_id=customer.id)
    ml = Actor(name="m", role=Role.ml)
    rows, _ = _new_rows(session.get_bind(), ml, FeedFilter(), 0)
    assert rows and not any(word in row for row in rows for word in PERSONAL)
    analyst_rows, _ = _new_rows(session.get_bind(), Actor(name="a", role=Role.analyst),
                                FeedFilter(), 0)  # fmt: skip
    assert any("Zebedee Quill" in row for row in analyst_rows)


def test_redact_masks_personal_keys_and_customer_names_only() -> None:
    answer = {
        "shop": {"name": "Corner Shop"},
        "customer": {"id": 3, "name": "Zebedee Quill"},
        "customers": [{"id": 4, "name": "Ottoline Marsh", "external_ref": "OM-4410"}],
        "items": [{"external_ref": "ZQ-7781", "name": "Zebedee Quill", "stake": 5.0,
                   "events": [{"name": "3.15 Ascot"}]}],
        "uploaded_by": "till-wilhelmina",
        "history": [{"actor": "ana-reviewer", "note": None, "detail": {"assignee": "bob"}}],
    }  # fmt: skip
    masked = redact(answer)
    assert masked["shop"]["name"] == "Corner Shop"  # a shop's name is not personal
    assert masked["items"][0]["events"][0]["name"] == "3.15 Ascot"
    assert masked["items"][0]["stake"] == 5.0 and masked["customer"]["id"] == 3
    assert not any(word in str(masked) for word in PERSONAL + ["bob"])
    assert masked["uploaded_by"] == REDACTED and masked["history"][0]["note"] is None
