"""The slip index after a start: how long the background build takes, how long a slip
look-up (``workers.pipeline.match_slip``, the counter check's index part) takes while it
runs (the exact search over the newest slips) and after it, and the CPU of an index refresh
that finds nothing new (every slip check does one).

The database: a fresh PostgreSQL database with N synthetic embeddings of the shipped
model's dimension (writers of ~5 slips: one direction each plus noise) and a membership per
slip; the foreign keys to slips and clusters are dropped in this throw-away database, since
only the index's own tables are read.

    .venv/bin/python bench/index_build.py --slips 200000
    .venv/bin/python bench/index_build.py --reuse sliplink_bench_index_ab12cd --keep
    .venv/bin/python bench/index_build.py --reuse NAME --keep --refresh-only --tree /tmp/old

``--refresh-only --tree DIR`` times only the refresh (no-op and cold) with the code of
another checkout (an A/B of the statements built once).  Prints one JSON object and writes
bench/results/index_build[_refresh].json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
VERSION = "bench-index"
DIM = 256


def _fill(url: str, n: int) -> None:
    import psycopg

    from store.db import migrate

    migrate(url)
    rng = np.random.default_rng(7)
    writers = max(1, n // 5)
    directions = rng.standard_normal((writers, DIM)).astype(np.float32)
    now = datetime.now(UTC)
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        fks = conn.execute(
            "SELECT conrelid::regclass::text, conname FROM pg_constraint WHERE contype = 'f' "
            "AND conrelid::regclass::text IN ('embeddings', 'cluster_members')"
        ).fetchall()
        for table, fk in fks:
            conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{fk}"')
        conn.execute(
            "INSERT INTO model_activations (version, path, actor, activated_at) "
            "VALUES (%s, NULL, 'bench', now())",
            (VERSION,),
        )
        with conn.cursor() as cur:
            cols = "slip_id, model_version, vector, dim, usable, quality, created_at"
            with cur.copy(f"COPY embeddings ({cols}) FROM STDIN") as copy:
                for start in range(0, n, 10_000):
                    ids = np.arange(start, min(n, start + 10_000))
                    v = directions[ids % writers] + 0.6 * rng.standard_normal(
                        (len(ids), DIM)
                    ).astype(np.float32)
                    v /= np.linalg.norm(v, axis=1, keepdims=True)
                    for sid, row in zip(ids.tolist(), v.astype("<f4"), strict=True):
                        copy.write_row((sid + 1, VERSION, row.tobytes(), DIM, True, "{}", now))
            cols = "slip_id, model_version, cluster_id, confidence, joined_at"
            with cur.copy(f"COPY cluster_members ({cols}) FROM STDIN") as copy:
                for sid in range(n):
                    copy.write_row((sid + 1, VERSION, sid % writers + 1, 0.9, now))
        conn.execute("ANALYZE")


def _queries(k: int) -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    q = rng.standard_normal((k, DIM)).astype(np.float32)
    return list(q / np.linalg.norm(q, axis=1, keepdims=True))


def _ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
    return {"n": len(values), "p50_ms": round(1e3 * statistics.median(values), 1),
            "p95_ms": round(1e3 * p95, 1), "max_ms": round(1e3 * values[-1], 1)}  # fmt: skip


def _refresh_only(url: str) -> dict[str, object]:
    from sqlmodel import Session

    from store.db import get_engine
    from workers.pipeline import Assigner

    engine = get_engine(url)
    assigner = Assigner(VERSION)
    with Session(engine) as s:
        t0 = time.perf_counter()
        assigner.refresh(s, dim=DIM)
        cold = time.perf_counter() - t0
        for _ in range(50):  # warm the connection and plan caches
            assigner.refresh(s, dim=DIM)
        cpu0, t0 = time.process_time(), time.perf_counter()
        for _ in range(1000):
            assigner.refresh(s, dim=DIM)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    return {
        "cold_build_s": round(cold, 1),
        "noop_refresh_cpu_ms": round(cpu, 3),
        "noop_refresh_wall_ms": round(wall, 3),
    }  # fmt: skip  (1000 calls: s -> ms each)


def _measure(url: str) -> dict[str, object]:
    from sqlmodel import Session

    import cv.cluster  # noqa: F401 - imported before the clock starts, as in a running API
    from store.db import get_engine
    from workers import pipeline

    engine = get_engine(url)
    queries = _queries(400)
    build = pipeline.start_index_build(engine, VERSION)
    during: list[float] = []
    sources: set[str] = set()
    i = 0
    with Session(engine) as s:
        while not build.done.is_set():
            t0 = time.perf_counter()
            found = pipeline.match_slip(
                session=s, model_version=VERSION, vector=queries[i % 400], threshold=0.8
            )
            if found.source == "recent":  # the last one may already use the index
                during.append(time.perf_counter() - t0)
            sources.add(found.source)
            i += 1
            time.sleep(0.2)  # a till's pace, not a flood: the build needs the cores
        after: list[float] = []
        for q in queries[:200]:
            t0 = time.perf_counter()
            found = pipeline.match_slip(session=s, model_version=VERSION, vector=q, threshold=0.8)
            after.append(time.perf_counter() - t0)
            assert found.source == "index"
    return {"build_s": round(build.seconds or 0.0, 1), "build_error": build.error,
            "indexed": build.slips, "during_build": _ms(during),
            "after_build": _ms(after), "refresh": _refresh_only(url)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slips", type=int, default=200_000)
    parser.add_argument("--reuse", help="an existing bench database (no fill)")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--refresh-only", action="store_true")
    parser.add_argument("--tree", help="import workers/ and store/ from this checkout")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.tree).resolve() if args.tree else ROOT))
    from sqlalchemy import create_engine, text

    name = args.reuse or f"sliplink_bench_index_{uuid.uuid4().hex[:6]}"
    url = ADMIN.rsplit("/", 1)[0] + f"/{name}"
    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    if not args.reuse:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        if not args.reuse:
            t0 = time.perf_counter()
            _fill(url, args.slips)
            print(f"filled {name} with {args.slips} slips in {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr)  # fmt: skip
        from workers.pipeline import single_threaded_math

        single_threaded_math()  # as in the API and the workers
        result = _refresh_only(url) if args.refresh_only else _measure(url)
        result = {"database": name, "tree": args.tree or ".", **result}
    finally:
        from store.db import dispose_engines

        dispose_engines()
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    print(json.dumps(result, indent=2))
    out = ROOT / "bench" / "results" / f"index_build{'_refresh' if args.refresh_only else ''}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
