"""The demo: the shipped sample slips go through the real HTTP API on the embedded default."""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from store.models import BET_TYPES

SAMPLE_SET = Path(__file__).resolve().parent.parent / "sample_slips" / "set"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _start_server(app, port: int):  # type: ignore[no-untyped-def]
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start on port {port}")
        time.sleep(0.05)
    return server, thread


_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2})(T\d{2}:\d{2}:\d{2}Z)?$")


def recent(data: Any, *, today: date) -> Any:
    """The sample data moved by whole days so its newest bet was placed yesterday.

    The sample bets carry fixed dates; replayed as they are, a month later every bet falls
    outside the rules' 30-day windows and the demo raises no alert.  Every ISO date and
    datetime (bets, legs' start times, self-exclusions, registrations) moves by the same
    number of days, so gaps, weekdays and times of day stay as written."""
    newest = max(
        date.fromisoformat(b["placed_at"][:10]) for b in data["bets"] if b.get("placed_at")
    )
    shift = timedelta(days=(today - newest).days - 1)

    def move(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        if isinstance(value, list):
            return [move(v) for v in value]
        if isinstance(value, str) and (m := _ISO.match(value)):
            return (date.fromisoformat(m.group(1)) + shift).isoformat() + (m.group(2) or "")
        return value

    return move(data)


def _bet_payload(bet: dict, *, shop_ids: dict, customer_ids: dict) -> dict:  # type: ignore[type-arg]
    bet_type = str(bet.get("bet_type", "single")).lower().replace(" ", "").replace("_", "")
    each_way = bool(bet.get("each_way")) or "eachway" in bet_type
    if bet_type not in BET_TYPES:
        bet_type = "single" if len(bet.get("legs", [])) <= 1 else "other"
    return {
        "shop_id": shop_ids.get(bet.get("shop")),
        "customer_id": customer_ids.get(bet.get("customer")) if bet.get("customer") else None,
        "placed_at": bet.get("placed_at"),
        "currency": bet.get("currency", "GBP"),
        "stake": bet["unit_stake"],
        "total_stake": bet.get("total_stake"),
        "bet_type": bet_type,
        "each_way": each_way,
        "legs": bet["legs"],
    }


def run_demo(*, port: int, serve: bool, sample_dir: Path = SAMPLE_SET) -> int:
    from cli.runtime import build_app
    from store.access import create_api_key
    from store.db import session_scope
    from store.models import Role
    from store.settings import get_settings

    bets_file = sample_dir / "bets.json"
    if not bets_file.is_file():
        _say(f"error: {bets_file} is missing: the sample slips are not installed")
        return 2
    base = get_settings()
    demo_dir = base.data_dir / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    db_path = demo_dir / "sliplink-demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    os.environ["SLIPLINK_DATABASE_URL"] = f"sqlite:///{db_path}"
    os.environ.pop("SLIPLINK_BROKER_URL", None)
    get_settings.cache_clear()
    settings = get_settings()

    _say(f"demo database: {db_path}")
    app = build_app(settings)
    with session_scope() as session:
        _, admin_key = create_api_key(session=session, name="demo-admin", role=Role.admin)
        ui_password = _demo_user(session)

    listen_port = port if serve else 0
    if listen_port == 0:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            listen_port = sock.getsockname()[1]
    server, thread = _start_server(app, listen_port)
    url = f"http://127.0.0.1:{listen_port}"
    data = recent(json.loads(bets_file.read_text()), today=datetime.now(UTC).date())
    started = time.monotonic()
    with httpx.Client(base_url=url, headers={"X-API-Key": admin_key}, timeout=60) as client:
        shop_ids, shop_keys = {}, {}
        for shop in data["shops"]:
            resp = client.post("/shops", json=shop)
            resp.raise_for_status()
            shop_ids[shop["code"]] = resp.json()["id"]
        with session_scope() as session:
            for code, shop_id in shop_ids.items():
                shop_keys[code] = create_api_key(
                    session=session, name=f"till-{code}", role=Role.shop, shop_id=shop_id
                )[1]
        customer_ids = {}
        for customer in data["customers"]:
            payload = {k: v for k, v in customer.items() if k != "ref"}
            payload["external_ref"] = customer["ref"]
            resp = client.post("/customers", json=payload)
            resp.raise_for_status()
            customer_ids[customer["ref"]] = resp.json()["id"]
        slip_ids = []
        for i, bet in enumerate(data["bets"], 1):
            till = {"X-API-Key": shop_keys[bet["shop"]]}
            payload = _bet_payload(bet, shop_ids=shop_ids, customer_ids=customer_ids)
            resp = client.post("/bets", json=payload, headers=till)
            resp.raise_for_status()
            bet_id = resp.json()["id"]
            image = sample_dir / bet["image"]
            with image.open("rb") as fh:
                resp = client.post(
                    f"/bets/{bet_id}/slip", files={"slip": (image.name, fh)}, headers=till
                )
            resp.raise_for_status()
            slip_ids.append(resp.json()["id"])
            if i % 20 == 0:
                _say(f"  uploaded {i}/{len(data['bets'])} bets with slips")
        _say(f"uploaded {len(slip_ids)} bets and slips in {time.monotonic() - started:.1f}s")
        statuses = _wait_for_pipeline(client, slip_ids, has_pipeline=app.state.pipeline is not None)
        _settle(app.state.pipeline)
        summary = _summary(client, statuses)
    print(summary, flush=True)
    if serve:
        _say(f"\nUI and API on {url}  (API docs: {url}/docs)")
        _say(f"admin API key: {admin_key}")
        _say(f"web UI: {url}/login  user: admin  password: {ui_password}")
        _say("Ctrl-C to stop")
        try:
            while thread.is_alive():
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    server.should_exit = True
    thread.join(timeout=10)
    pipeline = app.state.pipeline
    if pipeline is not None and hasattr(pipeline, "shutdown"):
        pipeline.shutdown()
    return 0


def _demo_user(session) -> str:  # type: ignore[no-untyped-def]
    """The demo's web UI login: user ``admin`` with a fresh random password (printed)."""
    import secrets

    from store.access import SYSTEM
    from store.models import Role
    from store.users import create_user

    password = secrets.token_urlsafe(9)
    create_user(session=session, username="admin", password=password, role=Role.admin,
                display_name="Demo admin", actor=SYSTEM)  # fmt: skip
    return password


def _wait_for_pipeline(
    client: httpx.Client, slip_ids: list[int], *, has_pipeline: bool, timeout: float = 600
) -> Counter:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while True:
        statuses = Counter(client.get(f"/slips/{sid}").json()["status"] for sid in slip_ids)
        done = statuses["ready"] + statuses["failed"]
        if not has_pipeline or done == len(slip_ids) or time.monotonic() > deadline:
            return statuses
        _say(f"  processed {done}/{len(slip_ids)} slips")
        time.sleep(1.0)


def _settle(pipeline: object | None) -> None:
    """Let assignment and rules finish, then one full re-clustering of the batch (what the
    nightly job does), so the summary shows batch-quality clusters and their alerts."""
    if pipeline is None or not hasattr(pipeline, "wait_idle"):
        return
    pipeline.wait_idle(300)
    if hasattr(pipeline, "recluster_now"):
        _say("re-clustering the batch ...")
        pipeline.recluster_now()
        pipeline.wait_idle(300)


def _summary(client: httpx.Client, statuses: Counter) -> str:  # type: ignore[type-arg]
    lines = ["", "sliplink demo summary", "---------------------"]
    by_status = ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
    lines.append(f"slips: {sum(statuses.values())} ({by_status})")
    bets = client.get("/bets", params={"limit": 1}).json()
    lines.append(f"bets: {bets['total']}")
    clusters = client.get("/clusters", params={"limit": 1000})
    if clusters.status_code == 200:
        body = clusters.json()
        items = body["items"] if isinstance(body, dict) else body
        multi = [c for c in items if c.get("size", 0) >= 2]
        linked = [c for c in items if len(c.get("customers", [])) >= 2]
        accounts = sorted({cu for c in linked for cu in c.get("customers", [])})
        largest = max((c.get("size", 0) for c in multi), default=0)
        lines.append(f"clusters: {len(multi)} with 2+ slips (largest {largest})")
        lines.append(
            f"linked customers: {len(accounts)} accounts in {len(linked)} clusters holding "
            "2+ customer accounts"
        )
        attributed = 0
        for c in multi:
            detail = client.get(f"/clusters/{c['id']}")
            if detail.status_code == 200:
                attributed += len(detail.json().get("attributed", []))
        lines.append(f"anonymous slips attributed to a known customer: {attributed}")
    alerts = client.get("/alerts", params={"limit": 500})
    if alerts.status_code == 200:
        body = alerts.json()
        items = body["items"] if isinstance(body, dict) else body
        total = body.get("total", len(items)) if isinstance(body, dict) else len(items)
        by_rule = Counter(a.get("rule_id", "?") for a in items)
        lines.append(f"alerts: {total}")
        for rule, count in sorted(by_rule.items()):
            lines.append(f"  {rule}: {count}")
    else:
        lines.append(f"alerts: unavailable ({alerts.status_code})")
    return "\n".join(lines)
