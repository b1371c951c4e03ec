"""GET /slips/{id}/accounts: the customer accounts a slip's handwriting most resembles, read
from the stored vectors under the active model (a reviewer's shortlist, never a link)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from store.clustering import store_embedding
from tests.conftest import auth
from tests.factories import make_customer
from tests.rules.scenario import MODEL, activate, bet, slip

NOW = datetime.now(UTC)


def _hand(rng: np.random.Generator, axis: int) -> np.ndarray:
    v = np.zeros(32)
    v[axis] = 1.0
    v += 0.9 * rng.standard_normal(32) / np.sqrt(32)
    return (v / np.linalg.norm(v)).astype(np.float32)


def _slip(session, rng, *, axis, customer=None, days_ago=1, usable=True, embed=True) -> int:  # type: ignore[no-untyped-def]
    b = bet(session, at=NOW - timedelta(days=days_ago), stake=5, customer=customer)
    s = slip(session, b)
    if embed:
        store_embedding(
            session=session,
            slip_id=int(s.id),  # type: ignore[arg-type]
            model_version=MODEL,
            vector=_hand(rng, axis),
            usable=usable,
            quality={} if usable else {"flags": ["blank"]},
        )
        session.commit()
    return int(s.id)  # type: ignore[arg-type]


def _world(session):  # type: ignore[no-untyped-def]
    activate(session)
    rng = np.random.default_rng(11)
    alice, bob, carol, dave = (make_customer(session) for _ in range(4))
    for i in range(8):
        _slip(session, rng, axis=0, customer=alice.id, days_ago=1 + i)
        _slip(session, rng, axis=1, customer=bob.id, days_ago=1 + i)
        _slip(session, rng, axis=0, customer=dave.id, days_ago=400 + i)  # outside 180 days
    for i in range(3):  # too few slips to stand for a hand
        _slip(session, rng, axis=0, customer=carol.id, days_ago=1 + i)
    return {"alice": alice.id, "bob": bob.id, "carol": carol.id, "dave": dave.id, "rng": rng}


def test_an_anonymous_slip_lists_its_writers_account_first(client, session) -> None:  # type: ignore[no-untyped-def]
    w = _world(session)
    anon = _slip(session, w["rng"], axis=0)
    r = client.get(f"/slips/{anon}/accounts", params={"k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["slip_id"], body["model_version"], body["min_slips"]) == (anon, MODEL, 6)
    ranked = [(a["customer_id"], a["slips"]) for a in body["accounts"]]
    assert ranked == [(w["alice"], 8), (w["bob"], 8)]  # carol: 3 slips; dave: too long ago
    assert body["accounts"][0]["score"] > 0.5 > body["accounts"][1]["score"]
    wider = client.get(f"/slips/{anon}/accounts", params={"days": 3650, "k": 1}).json()
    assert [a["customer_id"] for a in wider["accounts"]] in ([w["alice"]], [w["dave"]])


def test_only_the_risk_team_sees_whom_a_slip_resembles(client, session, keys) -> None:  # type: ignore[no-untyped-def]
    w = _world(session)
    anon = _slip(session, w["rng"], axis=0)
    assert client.get(f"/slips/{anon}/accounts", headers=auth(keys.analyst)).status_code == 200
    r = client.get(f"/slips/{anon}/accounts", headers=auth(keys.ml))
    assert r.status_code == 403 and "ml" in r.text


def test_a_known_customers_slip_counts_in_its_own_account(client, session) -> None:  # type: ignore[no-untyped-def]
    w = _world(session)
    own = _slip(session, w["rng"], axis=1, customer=w["bob"])
    [first, _] = client.get(f"/slips/{own}/accounts").json()["accounts"]
    assert (first["customer_id"], first["slips"]) == (w["bob"], 9)


def test_slips_without_usable_features_unknown_ids_and_bad_k(client, session) -> None:  # type: ignore[no-untyped-def]
    w = _world(session)
    pending = _slip(session, w["rng"], axis=0, embed=False)
    r = client.get(f"/slips/{pending}/accounts")
    assert r.status_code == 409 and f"slip {pending}" in r.text and MODEL in r.text
    blank = _slip(session, w["rng"], axis=0, usable=False)
    r = client.get(f"/slips/{blank}/accounts")
    assert r.status_code == 409 and "no usable handwriting" in r.text and "blank" in r.text
    assert client.get("/slips/999999/accounts").status_code == 404
    r = client.get(f"/slips/{blank}/accounts", params={"k": 0})
    assert r.status_code == 422 and "k" in r.text


def test_accounts_are_read_once_per_ten_minutes(client, session, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The shortlist reads every customer's vectors once and keeps them for PROFILES_TTL: a
    slip stored since shows in its account after that, not at once."""
    from store import clustering

    w = _world(session)
    anon = _slip(session, w["rng"], axis=0)
    before = client.get(f"/slips/{anon}/accounts").json()["accounts"][0]
    _slip(session, w["rng"], axis=0, customer=w["alice"])
    assert client.get(f"/slips/{anon}/accounts").json()["accounts"][0] == before  # cached
    later = clustering._clock() + clustering.PROFILES_TTL + 1
    monkeypatch.setattr(clustering, "_clock", lambda: later)
    after = client.get(f"/slips/{anon}/accounts").json()["accounts"][0]
    assert (after["customer_id"], after["slips"]) == (w["alice"], 9)
