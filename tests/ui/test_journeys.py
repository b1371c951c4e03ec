"""The main journeys in headless Chromium: upload a slip and see it processed; open an alert,
look at its slips, confirm the link and find it in the audit log; filter the live feed and
see a new bet appear.  Screenshots go to test-artifacts/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlmodel import col, select

from tests.conftest import REPO_ROOT
from tests.factories import scan_bytes
from tests.ui.conftest import login, screenshot, settled

pytestmark = pytest.mark.browser
SAMPLES = REPO_ROOT / "sample_slips" / "set"


def sample_slip(tmp_path: Path, n: int) -> Path:
    """A shipped sample slip (a realistic scan), or a synthetic one when the set is absent."""
    shipped = SAMPLES / f"slip_{n:05d}.jpg"
    if shipped.is_file():
        return shipped
    path = tmp_path / f"slip_{n}.png"
    path.write_bytes(scan_bytes(seed=n, size=(600, 420)))
    return path


def test_shop_uploads_a_slip_and_sees_it_processed(live_server, page, tmp_path) -> None:
    base = live_server.url
    login(page, base, "till", "/ui/upload")
    first, second = sample_slip(tmp_path, 1), sample_slip(tmp_path, 2)
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    page.set_input_files("#file-input", [str(first), str(second), str(bad)])
    cards = page.locator(".upload-item")
    assert cards.count() == 3
    # a text file is refused before anything is sent
    assert "not a JPEG, PNG or TIFF" in cards.nth(2).locator(".state").inner_text()
    cards.nth(2).locator(".remove").click()
    for i, (stake, selection) in enumerate([("2.50", "Distant Comet"), ("5", "Crimson Lantern")]):
        card = cards.nth(i)
        card.locator(".f-stake").fill(stake)
        card.locator(".f-event").fill("4.20 Exeter")
        card.locator(".f-selection").fill(selection)
        card.locator(".f-odds").fill("3.5")
    page.click("#upload-all")
    # per-file status: stored, then processed by the pipeline (extract + cluster)
    for i in range(2):
        state = cards.nth(i).locator(".state")
        page.wait_for_function(
            "el => /processed|could not be processed/.test(el.textContent)",
            arg=state.element_handle(), timeout=120_000,
        )  # fmt: skip
    screenshot(page, "upload_processed")
    for i in range(2):
        state = cards.nth(i).locator(".state")
        assert "processed" in state.inner_text() and "could not" not in state.inner_text(), (
            state.inner_text()
        )
        assert cards.nth(i).locator(".bar").evaluate("el => el.style.width") == "100%"
    with live_server.api() as api:
        body = api.get("/bets", params={"selection": "distant comet"}).json()
        assert body["total"] == 1 and body["items"][0]["shop_id"] == live_server.shop_id
        slip = api.get(f"/slips/{body['items'][0]['slip_id']}").json()
        assert slip["status"] == "ready"


def bet_json(stake: float, selection: str, *, sport: str = "Horse Racing",
             customer_id: int | None = None) -> dict[str, object]:  # fmt: skip
    leg = {"sport": sport, "selection": selection}
    return {"stake": stake, "customer_id": customer_id, "legs": [leg]}


def _bet_with_slip(api, image: Path, *, customer_id: int | None, selection: str) -> tuple[int, int]:  # type: ignore[no-untyped-def]  # noqa: E501
    bet = api.post("/bets", json=bet_json(10.0, selection, customer_id=customer_id))
    bet.raise_for_status()
    with image.open("rb") as fh:
        slip = api.post(f"/bets/{bet.json()['id']}/slip", files={"slip": (image.name, fh)})
    slip.raise_for_status()
    return bet.json()["id"], slip.json()["id"]


def test_analyst_confirms_a_link_from_an_alert(live_server, page, tmp_path) -> None:
    from store.alerts import Alert
    from store.clustering import LinkDecision

    base = live_server.url
    with live_server.api(live_server.shop_key) as till, live_server.api() as admin:
        a = admin.post("/customers", json={"external_ref": "C1", "name": "Ann Archer"}).json()
        b = admin.post("/customers", json={"external_ref": "C2", "name": "Bob Bowman"}).json()
        bet_a, slip_a = _bet_with_slip(till, sample_slip(tmp_path, 21), customer_id=a["id"],
                                       selection="Golden Arrow")  # fmt: skip
        bet_b, slip_b = _bet_with_slip(till, sample_slip(tmp_path, 22), customer_id=b["id"],
                                       selection="Golden Arrow")  # fmt: skip
    # the alert a linked-accounts rule raises (written directly: the rules have their own tests)
    with live_server.session() as s:
        alert = Alert(rule_id="linked_accounts", rule_version=1, kind="linked_accounts",
                      severity=3, base_severity=3, inbox="link_verification",
                      pivot_kind="customer", pivot_id=a["id"],
                      reason="two customer accounts share one handwriting cluster",
                      value=2.0, figures={"customers": 2}, link_confidence=0.83,
                      evidence={"slips": [slip_a, slip_b], "bets": [bet_a, bet_b],
                                "customers": [a["id"], b["id"]]})  # fmt: skip
        s.add(alert)
        s.commit()
        alert_id = alert.id
    login(page, base, "ana", "/ui/alerts")
    row = page.locator(f'#queue tr[data-href="/ui/alerts/{alert_id}"]')
    assert "linked_accounts" in row.inner_text() and "Ann Archer" in row.inner_text()
    page.keyboard.press("j")  # keyboard triage: move to the first alert and open it
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/ui/alerts/{alert_id}")
    cards = page.locator(".slip-card")
    assert cards.count() == 2
    # both slip images load and show side by side, with the customers involved
    page.wait_for_function(
        "() => [...document.querySelectorAll('.slip-view img')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    page.wait_for_function(
        "() => [...document.querySelectorAll('.slip-card')].every(c => c.dataset.boxes)",
        timeout=60_000,
    )
    boxes = [cards.nth(i).get_attribute("data-boxes") for i in range(2)]
    first, second = (cards.nth(i).bounding_box() for i in range(2))
    assert abs(first["y"] - second["y"]) < 2 and second["x"] > first["x"] + first["width"] - 1  # type: ignore[index]
    involved = page.locator("text=Customers involved").locator("..").inner_text()
    assert "Ann Archer" in involved and "Bob Bowman" in involved
    # the two slips' letters side by side, pair by pair (one writer: sample slips 21 and 22)
    page.wait_for_function("() => document.getElementById('letters').dataset.pairs", timeout=60_000)
    letters = page.locator("#letters")
    assert letters.is_visible() and letters.get_attribute("data-pairs") not in ("0", "error")
    pairs = letters.locator(".letter-pair")
    assert pairs.count() == int(letters.get_attribute("data-pairs") or 0) >= 5
    assert pairs.first.locator("canvas").count() == 2
    assert pairs.first.locator("canvas").first.evaluate("c => c.width > 0 && c.height === 44")
    title = page.locator("#letters-title").inner_text()
    assert f"slip {slip_a} and slip {slip_b}: letter match 0." in title, title
    screenshot(page, "alert_review")
    page.fill("#link-note", "same hand: slanted 7s, looped g")
    page.click("#confirm-link")
    page.wait_for_selector("#decisions .decision-confirmed", timeout=30_000)
    assert f"slips {min(slip_a, slip_b)}" in page.locator("#decisions").inner_text() or (
        f"slips {slip_a}" in page.locator("#decisions").inner_text()
    )
    with live_server.session() as s:
        decisions = s.exec(select(LinkDecision)).all()
        assert [(d.decision, d.actor, {d.slip_a, d.slip_b}) for d in decisions] == [
            ("confirmed", "ana", {slip_a, slip_b})
        ]
    # triage by keyboard: a = assign (to me), then a note, then r = resolve with an outcome
    settled(page)  # the confirm reloaded the page
    page.keyboard.press("a")
    page.wait_for_selector("#history li:has-text('assign')")
    settled(page)  # the assignment reloaded the page
    page.fill("#alert-note", "linked accounts confirmed by handwriting")
    page.click("#do-note")
    page.wait_for_selector("#notes li:has-text('linked accounts confirmed')")
    settled(page)  # the note reloaded the page
    page.select_option("#outcome", "confirmed_risk")
    page.locator("body").click(position={"x": 5, "y": 300})
    page.keyboard.press("r")
    page.wait_for_selector(".page-head .pill:has-text('closed')")
    with live_server.session() as s:
        closed = s.get(Alert, alert_id)
        assert closed is not None and closed.assignee == "ana"
        assert (closed.status, closed.outcome) == ("closed", "confirmed_risk")
    page.click("nav >> text=Audit")
    page.fill("input[name=action]", "link")
    page.click("form.filters button")
    audit = page.locator("#audit-table tbody").inner_text()
    assert "link.confirmed" in audit and "ana" in audit and "slanted 7s" in audit
    page.goto(f"{base}/ui/audit?entity=alert&entity_id={alert_id}")
    trail = page.locator("#audit-table tbody").inner_text()
    assert "alert.assign" in trail and "alert.status" in trail and "alert.note" in trail
    screenshot(page, "audit_link_confirmed")
    assert all(b not in (None, "error") for b in boxes), boxes


def test_live_feed_filter_and_a_new_bet_appears(live_server, page) -> None:
    base = live_server.url
    with live_server.api() as admin:
        admin.post("/customers", json={"external_ref": "W1", "name": "Wendy Watch",
                                       "risk_category": "watch"}).raise_for_status()  # fmt: skip
        watched = admin.get("/customers", params={"risk_category": "watch"}).json()[0]["id"]
        for selection in ("Old Timer", "Golden Arrow"):
            admin.post("/bets", json=bet_json(4.0, selection)).raise_for_status()
    login(page, base, "ana", "/ui/feed")
    assert page.locator("#feed-body tr").count() == 2
    page.fill("#feed-filters input[name=selection]", "golden arrow")
    page.fill("#feed-filters input[name=min_stake]", "3")
    page.click("#feed-filters button[type=submit]")
    page.wait_for_url(re.compile(r".*selection=golden.*"))
    assert page.locator("#feed-body tr").count() == 1
    page.wait_for_selector("#live.on")  # the event stream is open
    with live_server.api(live_server.shop_key) as till:
        ignored = till.post("/bets", json=bet_json(50.0, "Arsenal", sport="Football"))
        small = till.post("/bets", json=bet_json(1.0, "Golden Arrow"))
        wanted = till.post("/bets", json=bet_json(25.0, "GOLDEN ARROW", customer_id=watched))
    new_row = page.locator(f'#feed-body tr[data-bet-id="{wanted.json()["id"]}"]')
    new_row.wait_for(timeout=30_000)
    rows = page.locator("#feed-body tr")
    assert rows.count() == 2 and rows.first.get_attribute("data-bet-id") == str(wanted.json()["id"])
    assert "risk-red" in (new_row.get_attribute("class") or "")
    assert "Wendy Watch" in new_row.inner_text()
    for other in (ignored, small):
        assert page.locator(f'#feed-body tr[data-bet-id="{other.json()["id"]}"]').count() == 0
    assert page.locator("#feed-count").inner_text() == "2"
    # the runs panel: 'Golden Arrow' took 3 of the last 5 bets
    page.fill("#runs-x", "3")
    page.fill("#runs-y", "5")
    page.click("#runs-form button")
    assert "Golden Arrow" in page.locator("#runs-list").inner_text()
    screenshot(page, "live_feed_filtered")


def test_analyst_rejects_a_cluster_link_and_sees_linked_customers(
    live_server, page, tmp_path
) -> None:
    import time

    from store.clustering import (
        ClusterEvent,
        ClusterMember,
        LinkDecision,
        WriterCluster,
        active_model_version,
    )

    base = live_server.url
    with live_server.api(live_server.shop_key) as till, live_server.api() as admin:
        a = admin.post("/customers", json={"external_ref": "C1", "name": "Ann Archer"}).json()
        b = admin.post("/customers", json={"external_ref": "C2", "name": "Bob Bowman"}).json()
        _, slip_a = _bet_with_slip(
            till, sample_slip(tmp_path, 31), customer_id=a["id"], selection="Misty Sovereign"
        )
        _, slip_b = _bet_with_slip(
            till, sample_slip(tmp_path, 32), customer_id=b["id"], selection="Misty Sovereign"
        )
        _, slip_c = _bet_with_slip(
            till, sample_slip(tmp_path, 33), customer_id=None, selection="Misty Sovereign"
        )
    # wait for the pipeline to assign the slips, then put them in one cluster (what the
    # clusterer does when one hand writes for two accounts; the clusterer has its own tests)
    deadline = time.monotonic() + 120
    while True:
        with live_server.session() as s:
            version = active_model_version(session=s)
            members = s.exec(
                select(ClusterMember).where(
                    col(ClusterMember.slip_id).in_([slip_a, slip_b, slip_c]),
                    ClusterMember.model_version == version,
                )
            ).all()
            if len(members) == 3:
                cluster = WriterCluster(model_version=version, size=3)
                s.add(cluster)
                s.flush()
                for m in members:
                    m.cluster_id, m.confidence = cluster.id, 0.91
                    s.add(m)
                s.add(ClusterEvent(cluster_id=cluster.id, kind="created", detail={}))
                s.commit()
                cluster_id = cluster.id
                break
        assert time.monotonic() < deadline, "the pipeline did not assign the slips"
        time.sleep(0.5)
    login(page, base, "ana", "/ui/clusters")
    page.click("label:has-text('links 2+ customers') input")
    page.click("form.filters button")
    row = page.locator(f'a[href="/ui/clusters/{cluster_id}"]')
    assert "Ann Archer" in page.locator("table.grid tbody").inner_text()
    row.click()
    page.wait_for_url(f"{base}/ui/clusters/{cluster_id}")
    assert page.locator(".slip-card").count() == 3
    assert "confidence 0.91" in page.locator(".slip-card").first.inner_text()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.slip-card')].every(c => c.dataset.boxes)",
        timeout=60_000,
    )
    # three slips: nothing picked, no letters yet; picking two compares their letters
    assert page.locator("#letters-hint").is_visible() and page.locator("#letters").is_hidden()
    for slip in (slip_a, slip_b):
        page.check(f'.pick[value="{slip}"]')
    page.wait_for_function("() => document.getElementById('letters').dataset.pairs", timeout=60_000)
    assert page.locator("#letters").is_visible()
    assert page.locator("#letter-pairs .letter-pair").count() >= 5
    assert f"slip {slip_a} and slip {slip_b}" in page.locator("#letters-title").inner_text()
    screenshot(page, "cluster_review")
    page.fill("#link-note", "different hands: the 7s differ")
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("x")  # reject
    page.wait_for_selector("#decisions .decision-rejected")
    with live_server.session() as s:
        decisions = s.exec(select(LinkDecision)).all()
        assert [(d.decision, d.actor, d.note) for d in decisions] == [
            ("rejected", "ana", "different hands: the 7s differ")
        ]
    # the customer 360 shows the cluster and the account linked through it
    page.goto(f"{base}/ui/customers/{a['id']}")
    linked = page.locator("text=Handwriting clusters and linked customers").locator("..")
    assert f"cluster {cluster_id}" in linked.inner_text() and "Bob Bowman" in linked.inner_text()
    screenshot(page, "customer_360")


def test_cluster_page_lists_the_accounts_its_anonymous_slips_resemble(live_server, page) -> None:  # type: ignore[no-untyped-def]
    """A cluster of two anonymous slips in Ann's hand: its page names Ann's account first
    (Bob's, another hand, after it) as a shortlist, linked to her page for the analyst; the
    ml role sees the same shortlist under customer numbers, without links."""
    from datetime import UTC, datetime, timedelta

    import numpy as np

    from store import users
    from store.access import SYSTEM
    from store.clustering import store_embedding
    from store.models import Role
    from tests.factories import make_cluster, make_customer
    from tests.rules.scenario import bet, slip
    from tests.ui.conftest import PASSWORD

    version = "ui-resembling-v1"
    rng = np.random.default_rng(5)

    def hand(axis: int) -> np.ndarray:
        v = np.zeros(32)
        v[axis] = 1.0
        v += 0.9 * rng.standard_normal(32) / np.sqrt(32)
        return (v / np.linalg.norm(v)).astype(np.float32)

    now = datetime.now(UTC)
    with live_server.session() as s:
        users.create_user(session=s, username="mel", password=PASSWORD, role=Role.ml,
                          actor=SYSTEM)  # fmt: skip
        ann = make_customer(s, name="Ann Archer")
        bob = make_customer(s, name="Bob Bowman")

        def stored(customer: int | None, axis: int, days_ago: int) -> int:
            b = bet(s, at=now - timedelta(days=days_ago), stake=5, customer=customer)
            sid = int(slip(s, b).id)  # type: ignore[arg-type]
            store_embedding(session=s, slip_id=sid, model_version=version, vector=hand(axis),
                            usable=True, quality={})  # fmt: skip
            return sid

        for i in range(8):
            stored(ann.id, 0, 2 + i)
            stored(bob.id, 1, 2 + i)
        anonymous = [stored(None, 0, 1), stored(None, 0, 1)]
        s.commit()
        cluster_id = make_cluster(s, anonymous, model_version=version)
        ann_id, bob_id = int(ann.id), int(bob.id)  # type: ignore[arg-type]
    base = live_server.url
    login(page, base, "ana", f"/ui/clusters/{cluster_id}")
    shortlist = page.locator("#resembles")
    assert "2 anonymous slips compared" in shortlist.inner_text()
    items = shortlist.locator("ol li")
    assert items.count() == 2
    first = items.nth(0).inner_text()
    assert first.startswith("Ann Archer") and "8 slips" in first
    assert items.nth(1).inner_text().startswith("Bob Bowman")
    assert items.nth(0).locator("a").get_attribute("href") == f"/ui/customers/{ann_id}"
    screenshot(page, "cluster_resembles")
    page.context.clear_cookies()
    login(page, base, "mel", f"/ui/clusters/{cluster_id}")
    items = page.locator("#resembles ol li")
    assert items.nth(0).inner_text().startswith(f"customer #{ann_id}")
    assert items.nth(1).inner_text().startswith(f"customer #{bob_id}")
    assert page.locator("#resembles a").count() == 0 and "Ann Archer" not in page.content()
