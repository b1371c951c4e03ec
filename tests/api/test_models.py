"""The model registry over HTTP: listing, activation (embedded: a background rollout),
rollback, who may do what, and the model page with its evaluation report."""

from __future__ import annotations

import re
import time

import pytest
from fastapi.testclient import TestClient

from store import models_registry as registry
from store.access import SYSTEM
from tests.conftest import auth


def _wait_active(client: TestClient, version: str, key: str) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = client.get("/models/rollout", headers=auth(key)).json()
        if status["active"] == version and status["rollout"]["state"] == "complete":
            return status
        time.sleep(0.2)
    raise AssertionError(f"{version} never became active: {status}")


def test_list_activate_roll_back_over_http(client, keys, session, tmp_path):  # type: ignore[no-untyped-def]
    from cv.embed import load_default_model
    from tests.workers.test_rollout import train_small_model

    shipped = load_default_model().version
    listed = client.get("/models", headers=auth(keys.ml)).json()
    assert [m["version"] for m in listed] == [shipped] and not listed[0]["active"]
    resp = client.post(f"/models/{shipped}/activate", headers=auth(keys.ml))
    assert resp.status_code == 202 and resp.json()["version"] == shipped
    _wait_active(client, shipped, keys.ml)

    small = train_small_model(tmp_path / "m.npz", writers=3)
    registry.register_model(session=session, model=small, actor="ml-person")
    session.commit()
    # an analyst reads models but may not change the one that serves
    assert client.get(f"/models/{small.version}", headers=auth(keys.analyst)).status_code == 200
    resp = client.post(f"/models/{small.version}/activate", headers=auth(keys.analyst))
    assert resp.status_code == 403
    resp = client.post(f"/models/{small.version}/activate", headers=auth(keys.ml))
    assert resp.status_code == 202
    _wait_active(client, small.version, keys.ml)
    detail = client.get("/models/active").json()  # admin: ml answers mask who acted
    assert detail["version"] == small.version and detail["trained_by"] == "ml-person"
    assert [a["actor"] for a in detail["activations"]] == ["test-ml-None"]
    # activating what serves is a conflict, unknown versions are 404, nothing changes
    again = client.post(f"/models/{small.version}/activate", headers=auth(keys.ml))
    assert again.status_code == 409 and "already active" in again.json()["detail"]
    assert client.post("/models/nope/activate", headers=auth(keys.ml)).status_code == 404
    assert client.post("/models/rollback", headers=auth(keys.ml)).status_code == 202
    _wait_active(client, shipped, keys.ml)
    assert client.post("/models/rollout/cancel", headers=auth(keys.ml)).status_code == 404


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_model_page_shows_the_report(app, session, monkeypatch):  # type: ignore[no-untyped-def]
    from argon2 import PasswordHasher

    from cv.embed import load_default_model
    from store import users
    from store.models import Role

    model = load_default_model()
    registry.register_model(session=session, model=model)
    registry.store_report(
        session=session,
        version=model.version,
        files={"index.html": b"<html>report</html>", "pr_curve.png": b"\x89PNG..."},
    )
    registry.record_evaluation(
        session=session, version=model.version, name="sample", figures={"map": 0.91}, actor="x"
    )
    monkeypatch.setattr(users, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024,
                                                         parallelism=1))  # fmt: skip
    users.create_user(session=session, username="mlperson", password="correct horse battery",
                      role=Role.ml, actor=SYSTEM)  # fmt: skip
    session.commit()
    browser = TestClient(app)
    page = browser.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    browser.post("/login", data={"username": "mlperson", "password": "correct horse battery",
                                 "csrf_token": token}, follow_redirects=False)  # fmt: skip
    listing = browser.get("/ui/models")
    assert listing.status_code == 200 and model.version in listing.text
    page = browser.get(f"/ui/models/{model.version}")
    assert page.status_code == 200
    assert "0.9100" in page.text and "pr_curve.png" in page.text and "Activate" in page.text
    report = browser.get(f"/ui/models/{model.version}/report/index.html")
    assert report.status_code == 200 and report.text == "<html>report</html>"
    assert report.headers["content-type"].startswith("text/html")
    assert browser.get(f"/ui/models/{model.version}/report/other.png").status_code == 404
