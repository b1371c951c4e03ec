"""A real server started on a database with stored slips builds the slip index in the
background: a counter check with a slip that arrives during the build answers at once from
the newest slips and says so, /readyz stays ready and shows the build, and once built the
check searches the index."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from store.access import SYSTEM
from store.slips import store_slip
from tests.api.test_checks import BET, SAME_HAND, STORED, _image_bytes
from tests.conftest import auth
from tests.factories import make_bet, make_customer, make_shop
from tests.workers.test_index_build import CHECK_WAIT, SAFETY, Gate
from workers import pipeline


@pytest.fixture
def stored_slip(session, settings) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(slip id, customer id): a customer's slip run through the real extract and assign."""
    customer = make_customer(session)
    bet = make_bet(session, customer_id=customer.id)
    slip, _ = store_slip(
        session=session,
        bet_id=bet.id,
        data=_image_bytes(STORED),
        actor=SYSTEM,
        max_bytes=10**7,
        max_pixels=10**8,
    )
    session.commit()
    assert pipeline.extract_stage(slip.id, None, settings).extracted
    pipeline.assign_stage(slip.id, None, settings)
    return int(slip.id), int(customer.id)  # type: ignore[arg-type]


@pytest.fixture
def server(settings, stored_slip, monkeypatch) -> Iterator[tuple[str, Gate]]:  # type: ignore[no-untyped-def]
    """uvicorn in a thread on a fresh app, the process's indexes forgotten (a restart), every
    index build held by the gate until the test opens it."""
    import socket

    import uvicorn

    from api.main import create_app

    monkeypatch.setattr(pipeline, "_assigners", {})
    monkeypatch.setattr(pipeline, "_builds", {})
    gate = Gate(monkeypatch)
    app = create_app(settings, pipeline=None, warm_index=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + SAFETY
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", gate
    finally:
        gate.open.set()
        srv.should_exit = True
        thread.join(timeout=SAFETY)


def _check(client: httpx.Client, till: dict[str, str]) -> dict:  # type: ignore[type-arg]
    image = _image_bytes(SAME_HAND)
    resp = client.post(
        "/checks",
        data={"bet": json.dumps(BET)},
        files={"slip": ("rescan.jpg", image, "image/jpeg")},
        headers=till,
    )
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def test_checks_during_the_start_up_build_answer_from_the_newest_slips(  # type: ignore[no-untyped-def]
    server, session, keys, stored_slip
):
    url, gate = server
    slip_id, customer_id = stored_slip
    till = auth(keys.shop(make_shop(session).id))
    assert gate.entered.wait(SAFETY), "the server did not start building the index"
    with httpx.Client(base_url=url, timeout=CHECK_WAIT) as client:
        try:
            during = _check(client, till)
            ready = client.get("/readyz")
        except httpx.TimeoutException:
            pytest.fail("the check waited for the index build")
        finally:
            building = not gate.finished.is_set()
            gate.open.set()
        assert building
        assert during["slip_search"] == {"source": "recent", "slips_searched": 1}
        assert any("index is still loading" in r for r in during["reasons"])
        assert [m["slip_id"] for m in during["slip_matches"]] == [slip_id]
        assert during["slip_matches"][0]["customer_id"] == customer_id
        assert ready.status_code == 200 and ready.json()["ready"] is True
        assert ready.json()["index"]["state"] == "building"

        build = next(iter(pipeline._builds.values()))
        assert build.done.wait(SAFETY) and build.error is None
        ready = client.get("/readyz").json()
        assert ready["index"] == {"state": "warm"}
        after = _check(client, till)
        assert after["slip_search"] == {"source": "index", "slips_searched": None}
        assert not any("index is still loading" in r for r in after["reasons"])
        assert after["slip_matches"] == during["slip_matches"]
        assert after["decision"] == during["decision"]
    assert gate.builds == 1
