"""Counter check latency: ``POST /checks`` with and without a slip image, on PostgreSQL.

Issue 11's targets: p95 under 300 ms with a slip image, under 20 ms without.

The database: ``bench/rules.py``'s fill (shops, customers, some self-excluded or factored,
N bets over a year with one leg and one slip each, one handwriting cluster per writer), and
an embedding for every slip under the shipped model's version (synthetic: one direction per
writer plus noise).  On top, the real scans of ``sample_slips/set``: for every writer all
but two slips are stored as that writer's customer's bets, embedded with the shipped model
and assigned by the server's own pipeline (many stay on their own: the threshold is strict);
the two kept back are the queries of the slip checks.

The server: ``uvicorn --factory cli.runtime:build_app``, one process, in-process pipeline.
The client: one till at a time (a counter waits for its answer), then several tills at
once.  Latency is measured at the client over HTTP.  Prints one JSON object and writes
bench/results/checks.json.

    .venv/bin/python bench/checks.py --bets 200000 --json-checks 400 --slip-checks 100
    .venv/bin/python bench/checks.py --reuse sliplink_bench_checks_ab12cd --keep
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SET = ROOT / "sample_slips" / "set"
QUERIES_PER_WRITER = 2


def _bench_rules():  # type: ignore[no-untyped-def]
    """bench/rules.py as a module (its fill is the shared synthetic history)."""
    spec = importlib.util.spec_from_file_location("bench_rules", ROOT / "bench" / "rules.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _shipped_model():  # type: ignore[no-untyped-def]
    from cv.embed import load_default_model

    return load_default_model()


def embed_samples(model) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    """Every labelled scan of the sample set, decoded and embedded with the shipped model."""
    import hashlib

    from cv.imageio import decode_greyscale
    from workers.model import extract

    with (SET / "labels.csv").open() as fh:
        labels = list(csv.DictReader(fh))
    out = []
    for row in labels:
        data = (SET / row["image"]).read_bytes()
        grey, _ = decode_greyscale(data, max_pixels=50_000_000)
        features = extract(model, grey)
        out.append({"image": row["image"], "writer": row["writer"], "sha256":
                    hashlib.sha256(data).hexdigest(), "shape": grey.shape,
                    "vector": features.vector, "usable": features.usable})  # fmt: skip
    return out


def _synthetic_hands(samples: list[dict[str, object]], rng: np.random.Generator):  # type: ignore[no-untyped-def]
    """Generators of writer centres and of slips around a centre, drawn from the real sample
    embeddings' distribution (mean, spread between writers, spread within a writer), so the
    synthetic slips crowd the same region as real ones: realistic neighbours and distractors
    for the search, not vectors orthogonal to every real slip."""
    x = np.stack([np.asarray(v["vector"], dtype=np.float64) for v in samples])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    writers = np.array([str(v["writer"]) for v in samples])
    means = {w: x[writers == w].mean(axis=0) for w in np.unique(writers)}
    mean = np.mean(list(means.values()), axis=0)
    between = np.stack(list(means.values())) - mean
    within = x - np.stack([means[w] for w in writers])
    # square-root factors of the two covariances (rows: directions scaled by their spread)
    b = np.linalg.svd(between, full_matrices=False)
    w = np.linalg.svd(within, full_matrices=False)
    b_factor = (b[1][:, None] * b[2]) / np.sqrt(len(between))
    w_factor = (w[1][:, None] * w[2]) / np.sqrt(len(within))

    def centre() -> np.ndarray:
        return mean + rng.normal(size=b_factor.shape[0]) @ b_factor

    def slips(centres: np.ndarray) -> np.ndarray:
        noise = rng.normal(size=(len(centres), w_factor.shape[0])) @ w_factor
        out = (centres + noise).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    return centre, slips


def fill_embeddings(
    url: str, *, version: str, samples: list[dict[str, object]], seed: int
) -> dict[str, float]:
    """Move the fill's clusters to ``version`` and give every slip an embedding, one
    synthetic hand per fill writer."""
    rules = _bench_rules()
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    engine = create_engine(url)
    with engine.begin() as conn:
        for table in ("clusters", "cluster_members"):
            conn.execute(text(f"UPDATE {table} SET model_version = :v"), {"v": version})
        conn.execute(text("UPDATE model_activations SET version = :v"), {"v": version})
        rows = conn.execute(
            text("SELECT slip_id, cluster_id FROM cluster_members ORDER BY slip_id")
        ).all()
    slip_ids = np.array([r[0] for r in rows], dtype=np.int64)
    writers = np.array([r[1] for r in rows], dtype=np.int64)
    new_centre, new_slips = _synthetic_hands(samples, rng)
    centres: dict[int, np.ndarray] = {}
    created = rules.END - timedelta(days=1)
    dim = int(np.asarray(samples[0]["vector"]).shape[0])

    def embeddings():  # type: ignore[no-untyped-def]
        for start in range(0, len(slip_ids), 10_000):
            ids, ws = slip_ids[start : start + 10_000], writers[start : start + 10_000]
            for w in np.unique(ws):
                if int(w) not in centres:
                    centres[int(w)] = new_centre()
            x = new_slips(np.stack([centres[int(w)] for w in ws]))
            for sid, vec in zip(ids.tolist(), x, strict=True):
                yield (sid, sid, version, vec.astype("<f4").tobytes(), dim, True, "{}", created)

    raw = engine.raw_connection()
    rules._copy(
        raw,
        "embeddings",
        ["id", "slip_id", "model_version", "vector", "dim", "usable", "quality", "created_at"],
        embeddings(),
    )
    raw.commit()
    with raw.cursor() as cur:  # type: ignore[attr-defined]  # psycopg's cursor
        cur.execute(
            "SELECT setval(pg_get_serial_sequence('embeddings', 'id'), "
            "(SELECT max(id) FROM embeddings))"
        )
    raw.commit()
    raw.close()
    engine.dispose()
    return {"embeddings": len(slip_ids), "embed_fill_seconds": round(time.perf_counter() - t0, 1)}


def add_sample_slips(
    url: str, *, version: str, samples: list[dict[str, object]]
) -> list[dict[str, object]]:
    """Store the sample scans as bets of one customer per writer, embedded (not yet assigned:
    the server's sweeper assigns them); return the held-back queries."""
    rules = _bench_rules()
    by_writer: dict[str, list[dict[str, object]]] = {}
    for sample in samples:
        by_writer.setdefault(str(sample["writer"]), []).append(sample)
    engine = create_engine(url)
    queries: list[dict[str, object]] = []
    at = rules.END - timedelta(days=2)
    with engine.begin() as conn:
        nbet, nleg, nslip, nemb = (
            int(conn.execute(text(f"SELECT coalesce(max(id), 0) FROM {t}")).scalar_one())
            for t in ("bets", "legs", "slips", "embeddings")
        )
        for w_index, (writer, items) in enumerate(sorted(by_writer.items()), start=1):
            customer_id = w_index  # the fill's customers 1..25 stand for the writers
            for item in items[:-QUERIES_PER_WRITER]:
                vector = np.asarray(item["vector"], dtype="<f4")
                rows, cols = map(int, item["shape"])  # type: ignore[call-overload]
                nbet, nleg, nslip, nemb = nbet + 1, nleg + 1, nslip + 1, nemb + 1
                conn.execute(
                    text(
                        "INSERT INTO bets (id, shop_id, customer_id, placed_at, currency, stake, "
                        "total_stake, bet_type, each_way, odds, potential_return, sport, status, "
                        "created_at) VALUES (:id, 1, :c, :at, 'GBP', 10, 10, 'single', false, "
                        "3.0, 30, 'Horse Racing', 'open', :at)"
                    ),
                    {"id": nbet, "c": customer_id, "at": at},
                )
                conn.execute(
                    text(
                        "INSERT INTO legs (id, bet_id, position, sport, event, market, "
                        "selection, selection_key, odds) VALUES (:id, :b, 0, 'Horse Racing', "
                        "'3.15 Ascot', 'Win', 'Golden Arrow', 'golden arrow', 3.0)"
                    ),
                    {"id": nleg, "b": nbet},
                )
                conn.execute(
                    text(
                        "INSERT INTO slips (id, bet_id, sha256, width, height, original_type, "
                        "uploaded_by, uploaded_at, status, attempts, updated_at) VALUES (:id, "
                        ":b, :h, :w, :hh, 'jpeg', 'bench', :at, 'ready', 1, :at)"
                    ),
                    {"id": nslip, "b": nbet, "h": item["sha256"], "w": cols, "hh": rows,
                     "at": at},
                )  # fmt: skip
                conn.execute(
                    text(
                        "INSERT INTO embeddings (id, slip_id, model_version, vector, dim, usable, "
                        "quality, created_at) VALUES (:id, :s, :v, :vec, :d, :u, '{}', :at)"
                    ),
                    {"id": nemb, "s": nslip, "v": version, "vec": vector.tobytes(),
                     "d": int(vector.shape[0]), "u": item["usable"], "at": at},
                )  # fmt: skip
            for item in items[-QUERIES_PER_WRITER:]:
                queries.append(
                    {"image": item["image"], "writer": writer, "customer_id": customer_id}
                )
        for table in ("bets", "legs", "slips", "embeddings"):
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
            )
    engine.dispose()
    return queries


def _queries_of(url: str) -> list[dict[str, object]]:
    """The held-back queries of a reused database (same rule as ``add_sample_slips``)."""
    del url
    with (SET / "labels.csv").open() as fh:
        labels = list(csv.DictReader(fh))
    by_writer: dict[str, list[str]] = {}
    for row in labels:
        by_writer.setdefault(row["writer"], []).append(row["image"])
    return [
        {"image": image, "writer": writer, "customer_id": i}
        for i, (writer, images) in enumerate(sorted(by_writer.items()), start=1)
        for image in images[-QUERIES_PER_WRITER:]
    ]


def _unassigned(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        n = conn.execute(
            text(
                "SELECT count(*) FROM embeddings e WHERE NOT EXISTS (SELECT 1 FROM "
                "cluster_members m WHERE m.slip_id = e.slip_id AND m.model_version = "
                "e.model_version)"
            )
        ).scalar_one()
    engine.dispose()
    return int(n)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux ``/proc``), its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentiles(ms: list[float]) -> dict[str, float]:
    arr = np.asarray(ms)
    return {
        "n": len(ms),
        "p50_ms": round(float(np.percentile(arr, 50)), 1),
        "p95_ms": round(float(np.percentile(arr, 95)), 1),
        "p99_ms": round(float(np.percentile(arr, 99)), 1),
        "max_ms": round(float(arr.max()), 1),
    }


def _json_bet(rng: np.random.Generator, n_customers: int) -> dict[str, object]:
    runner = int(rng.integers(0, 20_000))
    bet: dict[str, object] = {
        "stake": float(round(np.exp(rng.normal(2.3, 1.0)), 2)),
        "legs": [
            {"sport": "Horse Racing", "event": f"Event {runner % 5000}",
             "selection": f"Runner {runner}", "odds": float(round(rng.uniform(1.5, 15), 2))}
        ],
    }  # fmt: skip
    if rng.random() < 0.6:
        bet["customer_id"] = int(rng.integers(1, n_customers + 1))
    return bet


def run_checks(
    base: str, key: str, *, queries: list[dict[str, object]], n_json: int, n_slip: int,
    concurrency: int, seed: int, n_customers: int, server_pid: int,
) -> dict[str, object]:  # fmt: skip
    rng = np.random.default_rng(seed)
    images = {q["image"]: (SET / str(q["image"])).read_bytes() for q in queries}
    headers = {"X-API-Key": key}
    out: dict[str, Any] = {}
    with httpx.Client(base_url=base, headers=headers, timeout=120) as client:

        def json_check(bet: dict[str, object]) -> float:
            t0 = time.perf_counter()
            resp = client.post("/checks", json=bet)
            ms = (time.perf_counter() - t0) * 1000
            assert resp.status_code == 200, resp.text
            return ms

        def slip_check(
            q: dict[str, object], bet: dict[str, object], timeout: float = 120
        ) -> tuple[float, dict]:  # type: ignore[type-arg]
            t0 = time.perf_counter()
            resp = client.post(
                "/checks",
                data={"bet": json.dumps(bet)},
                files={"slip": (str(q["image"]), images[str(q["image"])], "image/jpeg")},
                timeout=timeout,
            )
            ms = (time.perf_counter() - t0) * 1000
            assert resp.status_code == 200, resp.text
            return ms, resp.json()

        # warm-up: connections, the model, the assignment index (a serving process has them).
        # The first usable slip builds the index (minutes on a busy machine at 200k slips); an
        # unusable one stops before the search, and the build would land in a timed check.
        t0 = time.perf_counter()
        warm_up = {"stake": 5, "legs": [{"sport": "Tennis", "selection": "A"}]}
        for q in queries if n_slip else []:
            if slip_check(q, warm_up, timeout=1800)[1]["slip_usable"]:
                break
        out["first_slip_check_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        for _ in range(20):
            json_check(_json_bet(rng, n_customers))

        cpu = _cpu_seconds(server_pid)
        out["json_one_till"] = _percentiles(
            [json_check(_json_bet(rng, n_customers)) for _ in range(n_json)]
        )
        # server CPU per answer: what the check costs when it has a core to itself
        out["json_one_till"]["server_cpu_ms"] = round(
            (_cpu_seconds(server_pid) - cpu) * 1000 / n_json, 1
        )
        with ThreadPoolExecutor(concurrency) as pool:
            bets = [_json_bet(rng, n_customers) for _ in range(n_json)]
            out[f"json_{concurrency}_tills"] = _percentiles(list(pool.map(json_check, bets)))
        if not n_slip:  # --slip-checks 0: the JSON checks only
            return out
        cpu = _cpu_seconds(server_pid)
        slip_ms, found, wrong, matched_singletons, unusable = [], 0, 0, 0, 0
        for i in range(n_slip):
            q = queries[i % len(queries)]
            ms, body = slip_check(q, _json_bet(rng, n_customers) | {"customer_id": None})
            slip_ms.append(ms)
            ids = set(body["customer_ids"])
            writer_customer = q["customer_id"]
            found += writer_customer in ids
            wrong += bool(ids - {writer_customer})
            matched_singletons += any(m["cluster_id"] is None for m in body["slip_matches"])
            unusable += not body["slip_usable"]  # answered before the search: a faster path
        out["slip_one_till"] = _percentiles(slip_ms)
        out["slip_one_till"]["server_cpu_ms"] = round(
            (_cpu_seconds(server_pid) - cpu) * 1000 / n_slip, 1
        )
        out["slip_identification"] = {
            "checks": n_slip,
            "writer_found": found,
            "other_customer_named": wrong,
            "answers_naming_a_slip_left_on_its_own": matched_singletons,
            "unusable_slips": unusable,
        }
        with ThreadPoolExecutor(concurrency) as pool:
            jobs = [(queries[i % len(queries)], _json_bet(rng, n_customers))
                    for i in range(n_slip)]  # fmt: skip
            got = list(pool.map(lambda a: slip_check(*a)[0], jobs))
            out[f"slip_{concurrency}_tills"] = _percentiles(got)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bets", type=int, default=200_000)
    parser.add_argument("--json-checks", type=int, default=400)
    parser.add_argument("--slip-checks", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--reuse", help="an existing filled database name (skip the fill)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    from store.access import create_api_key
    from store.db import dispose_engines, get_engine, migrate, session_scope
    from store.models import Role

    rules = _bench_rules()
    model = _shipped_model()
    result: dict[str, object] = {"model": model.version}
    if args.reuse:
        name, url = args.reuse, f"{rules.PG}/{args.reuse}"
        migrate(url)
        queries = _queries_of(url)
    else:
        name = f"sliplink_bench_checks_{uuid.uuid4().hex[:6]}"
        url = rules._create_database(name)
        migrate(url)
        result |= rules.fill(url, n_bets=args.bets, seed=args.seed)
        samples = embed_samples(model)
        result |= fill_embeddings(url, version=model.version, samples=samples, seed=args.seed)
        queries = add_sample_slips(url, version=model.version, samples=samples)
        # the fill's statistics predate the model version change: refresh them, as autovacuum
        # would on a serving database
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("VACUUM ANALYZE"))
        engine.dispose()
        print(json.dumps(result), file=sys.stderr)
    result["prewarm_seconds"] = rules.prewarm(url)
    with session_scope(get_engine(url)) as s:
        _, key = create_api_key(session=s, name="bench till", role=Role.shop, shop_id=1)
        n_customers = int(s.execute(text("SELECT count(*) FROM customers")).scalar_one())
    dispose_engines()

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPLINK_")}
    env |= {"SLIPLINK_DATABASE_URL": url, "SLIPLINK_ENVIRONMENT": "test",
            "SLIPLINK_DATA_DIR": str(ROOT / "bench" / "results" / "data")}  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "cli.runtime:build_app",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--log-level", "warning", "--no-access-log"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.perf_counter()
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.perf_counter() - t0 > 300:
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        # the server's own sweeper assigns the sample slips (and builds its index doing so)
        while _unassigned(url) and time.perf_counter() - t0 < 900:
            time.sleep(1.0)
        result["server_ready_seconds"] = round(time.perf_counter() - t0, 1)
        result["load_average_before"] = [round(x, 1) for x in os.getloadavg()]
        result |= run_checks(
            base, key, queries=queries, n_json=args.json_checks, n_slip=args.slip_checks,
            concurrency=args.concurrency, seed=args.seed, n_customers=n_customers,
            server_pid=server.pid,
        )  # fmt: skip
        result["load_average_after"] = [round(x, 1) for x in os.getloadavg()]
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(30)
    result["database"] = name
    result["targets_ms"] = {"json_p95": 20, "slip_p95": 300}
    if not args.keep and not args.reuse:
        admin = create_engine(f"{rules.PG}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    out = ROOT / "bench" / "results" / "checks.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
