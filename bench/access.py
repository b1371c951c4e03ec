"""What access control costs per request: API key vs session cookie, and the ml role's masking.

In-process (FastAPI's TestClient, no network) on a fresh SQLite file with B bets; each
variant makes N ``GET /bets?limit=50`` calls (a 50-bet JSON page, ~25 kB), next to a
``GET /healthz`` baseline with no authentication; the masking step is also timed alone.
Prints one JSON object and writes it to bench/results/access.json.

    .venv/bin/python bench/access.py --bets 500 --requests 300
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _timed(call, n: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(n):
        start = time.perf_counter()
        resp = call()
        times.append((time.perf_counter() - start) * 1000)
        assert resp.status_code == 200, resp.text[:200]
    times.sort()
    return {"median_ms": round(statistics.median(times), 3),
            "p95_ms": round(times[int(len(times) * 0.95) - 1], 3)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bets", type=int, default=500)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()

    from fastapi.testclient import TestClient
    from sqlmodel import Session

    from api.main import create_app
    from store import users
    from store.access import SYSTEM, create_api_key
    from store.db import get_engine, migrate
    from store.models import Role
    from store.settings import Settings
    from tests.factories import make_bet, make_customer, make_shop

    tmp = Path(tempfile.mkdtemp(prefix="sliplink-bench-access-"))
    url = f"sqlite:///{tmp / 'bench.db'}"
    migrate(url)
    app = create_app(Settings(environment="test", database_url=url, data_dir=tmp), pipeline=None)
    with Session(get_engine(url), expire_on_commit=False) as s:
        shop = make_shop(s)
        customers = [make_customer(s) for _ in range(20)]
        for i in range(args.bets):
            make_bet(s, shop_id=shop.id, customer_id=customers[i % 20].id)
        _, admin = create_api_key(session=s, name="bench-admin", role=Role.admin)
        _, ml = create_api_key(session=s, name="bench-ml", role=Role.ml)
        users.create_user(session=s, username="bench", password="bench password 1",
                          role=Role.analyst, actor=SYSTEM)  # fmt: skip
        s.commit()

    page = "/bets?limit=50"
    results: dict[str, object] = {"bets": args.bets, "requests": args.requests, "page": page}
    with TestClient(app) as c:
        form = c.get("/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
        c.post("/login", data={"username": "bench", "password": "bench password 1",
                               "csrf_token": token}, follow_redirects=False)  # fmt: skip
        cookie = dict(c.cookies)
        c.cookies.clear()
        variants = {
            "healthz_no_auth": lambda: c.get("/healthz"),
            "api_key_admin": lambda: c.get(page, headers={"X-API-Key": admin}),
            "session_cookie_analyst": lambda: c.get(page, cookies=cookie),
            "api_key_ml_masked": lambda: c.get(page, headers={"X-API-Key": ml}),
        }
        for name, call in variants.items():
            _timed(call, 20)  # warm up
            results[name] = _timed(call, args.requests)
        body = c.get(page, headers={"X-API-Key": admin}).content
    # the masking step alone, on the same page: the request timings above are noisy on a
    # shared machine (load average reported below)
    from api.privacy import _masked_body

    start = time.perf_counter()
    for _ in range(args.requests):
        _masked_body(body)
    results["mask_page_bytes"] = len(body)
    results["mask_page_ms"] = round((time.perf_counter() - start) * 1000 / args.requests, 3)
    results["load_average_1min"] = round(os.getloadavg()[0], 2)
    out = ROOT / "bench" / "results" / "access.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
