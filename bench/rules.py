"""Rules engine speed on PostgreSQL with a million stored bets.

Fills a fresh PostgreSQL database (``COPY``) with shops, customers (some self-excluded,
some factored), 1,000,000 bets over a year with one leg and one slip each, and handwriting
clusters (one per writer; anonymous slips join known customers' clusters or anonymous ones),
then times

* the event-driven rules for one bet: ``run_event_rules`` for ``bet_placed`` and for
  ``slip_clustered`` on recent bets (p50 / p95 / p99 ms, every enabled rule, rolled back;
  ``both`` is the two together, the rules' whole work for one bet);
* the daily screening: ``run_screening`` once over the whole store (seconds, rolled back).

Prints one JSON object and writes it to bench/results/rules.json.

    .venv/bin/python bench/rules.py --bets 1000000 --samples 300
    .venv/bin/python bench/rules.py --reuse sliplink_bench_rules   # skip the fill
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy import event as sa_event

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG = "postgresql+psycopg://postgres@127.0.0.1:5432"
END = datetime(2026, 11, 1, tzinfo=UTC)
MODEL = "bench-v1"
SPORTS = ["Horse Racing", "Football", "Greyhounds", "Tennis", "Golf", "Cricket"]


def _create_database(name: str) -> str:
    admin = create_engine(f"{PG}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"{PG}/{name}"


def _copy(raw, table: str, columns: list[str], rows) -> None:  # type: ignore[no-untyped-def]
    with raw.cursor() as cur:
        with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def fill(url: str, *, n_bets: int, seed: int) -> dict[str, float]:
    """Write the synthetic history; returns counts and the seconds it took."""
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    engine = create_engine(url)
    raw = engine.raw_connection()
    n_shops, n_customers = 200, max(100, n_bets // 50)
    created = END - timedelta(days=400)
    _copy(
        raw,
        "shops",
        ["id", "code", "name", "region", "created_at"],
        ((i, f"S{i:04d}", f"Shop {i}", f"Region {i % 12}", created) for i in range(1, n_shops + 1)),
    )
    status = np.where(rng.random(n_customers) < 0.0025, "self_excluded", "active")
    factor = np.where(rng.random(n_customers) < 0.02, rng.uniform(0.05, 0.5, n_customers), 1.0)
    _copy(
        raw,
        "customers",
        [
            "id",
            "external_ref",
            "name",
            "status",
            "risk_category",
            "stake_factor",
            "restricted_sports",
            "restricted_price_types",
            "created_at",
            "updated_at",
        ],
        (
            (
                i + 1,
                f"C{i + 1:07d}",
                None,
                str(status[i]),
                "normal",
                float(round(factor[i], 3)),
                "[]",
                "[]",
                created,
                END - timedelta(days=60),
            )
            for i in range(n_customers)
        ),
    )

    # bets over a year; 40% anonymous; stakes log-normal around 10 GBP with a heavy tail
    seconds = rng.uniform(0, 365 * 86400, n_bets)
    seconds.sort()
    placed = [END - timedelta(days=365) + timedelta(seconds=float(s)) for s in seconds]
    anon = rng.random(n_bets) < 0.4
    customer = rng.integers(1, n_customers + 1, n_bets)
    shop = rng.integers(1, n_shops + 1, n_bets)
    stake = np.round(np.exp(rng.normal(2.3, 1.2, n_bets)), 2).clip(0.1, 20000)
    odds = np.round(rng.uniform(1.2, 15.0, n_bets), 2)
    settled = rng.random(n_bets) < 0.9
    won = rng.random(n_bets) < 0.3
    sport = rng.integers(0, len(SPORTS), n_bets)

    def bets():  # type: ignore[no-untyped-def]
        for i in range(n_bets):
            s, o, at = float(stake[i]), float(odds[i]), placed[i]
            st = ("won" if won[i] else "lost") if settled[i] else "open"
            ret = round(s * o, 2) if st == "won" else (0.0 if st == "lost" else None)
            yield (
                i + 1,
                int(shop[i]),
                None if anon[i] else int(customer[i]),
                at,
                "GBP",
                s,
                s,
                "single",
                False,
                o,
                round(s * o, 2),
                None,
                SPORTS[sport[i]],
                st,
                ret,
                at + timedelta(hours=2) if settled[i] else None,
                at,
            )

    _copy(
        raw,
        "bets",
        [
            "id",
            "shop_id",
            "customer_id",
            "placed_at",
            "currency",
            "stake",
            "total_stake",
            "bet_type",
            "each_way",
            "odds",
            "potential_return",
            "description",
            "sport",
            "status",
            "returns",
            "settled_at",
            "created_at",
        ],
        bets(),
    )
    _copy(
        raw,
        "legs",
        [
            "id",
            "bet_id",
            "position",
            "sport",
            "event",
            "market",
            "selection",
            "selection_key",
            "odds",
        ],
        (
            (
                i + 1,
                i + 1,
                0,
                SPORTS[sport[i]],
                f"Event {i % 5000}",
                "Win",
                f"Runner {i % 20000}",
                f"runner {i % 20000}",
                float(odds[i]),
            )
            for i in range(n_bets)
        ),
    )
    _copy(
        raw,
        "slips",
        [
            "id",
            "bet_id",
            "sha256",
            "width",
            "height",
            "original_type",
            "uploaded_by",
            "uploaded_at",
            "status",
            "error",
            "attempts",
            "updated_at",
        ],
        (
            (
                i + 1,
                i + 1,
                f"{i + 1:064x}",
                1000,
                1200,
                "png",
                "bench",
                placed[i],
                "ready",
                None,
                0,
                placed[i],
            )
            for i in range(n_bets)
        ),
    )

    # writers: every customer is one; anonymous slips go to a customer's writer (30%) or to
    # one of n_customers // 2 anonymous writers
    n_anon_writers = n_customers // 2
    writer = np.where(
        anon,
        np.where(
            rng.random(n_bets) < 0.3,
            rng.integers(1, n_customers + 1, n_bets),
            n_customers + rng.integers(1, n_anon_writers + 1, n_bets),
        ),
        customer,
    )
    sizes = np.bincount(writer, minlength=n_customers + n_anon_writers + 1)
    _copy(
        raw,
        "clusters",
        ["id", "model_version", "status", "size", "created_at", "updated_at"],
        (
            (w, MODEL, "active", int(sizes[w]), created, END)
            for w in range(1, n_customers + n_anon_writers + 1)
        ),
    )
    conf = np.round(rng.uniform(0.7, 1.0, n_bets), 4)
    _copy(
        raw,
        "cluster_members",
        ["id", "slip_id", "model_version", "cluster_id", "confidence", "joined_at"],
        ((i + 1, i + 1, MODEL, int(writer[i]), float(conf[i]), placed[i]) for i in range(n_bets)),
    )
    _copy(
        raw,
        "model_activations",
        ["id", "version", "path", "actor", "activated_at"],
        [(1, MODEL, None, "bench", created)],
    )
    raw.commit()
    with raw.cursor() as cur:
        for table in (
            "shops",
            "customers",
            "bets",
            "legs",
            "slips",
            "clusters",
            "cluster_members",
            "model_activations",
        ):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
    raw.commit()
    raw.close()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    return {
        "shops": n_shops,
        "customers": n_customers,
        "bets": n_bets,
        "clusters": int(n_customers + n_anon_writers),
        "fill_seconds": round(time.perf_counter() - t0, 1),
    }


def prewarm(url: str) -> float:
    """Load the tables and indexes the rules read into the OS page cache (``pg_prewarm`` in
    ``read`` mode): a serving database keeps its working set in memory, and a freshly filled
    one on a busy machine would otherwise time the disk.  Returns seconds spent."""
    t0 = time.perf_counter()
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        try:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_prewarm"))
        except Exception as exc:  # noqa: BLE001 - the bench still runs, cold
            print(f"pg_prewarm unavailable ({exc}); timing a cold cache", file=sys.stderr)
            return 0.0
        rels = conn.execute(
            text(
                "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = "
                "c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i')"
            )
        ).all()
        for (rel,) in rels:
            conn.execute(text("SELECT pg_prewarm(:rel, 'read')"), {"rel": rel})
    engine.dispose()
    return round(time.perf_counter() - t0, 1)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def _end(session, written: list[object], rollback_always: bool) -> None:  # type: ignore[no-untyped-def]
    """End a timed run as the pipeline does, but leave the store as it was: a run that
    raised or updated no alert wrote nothing and commits (as ``rules_stage`` does); one that
    did is rolled back.  (psycopg forgets its prepared statements at a ROLLBACK, so rolling
    back every run, ``--rollback-always``, times every statement with its planning.)"""
    if written or rollback_always:
        session.rollback()
    else:
        session.commit()


def time_rules(
    url: str,
    *,
    samples: int,
    seed: int,
    only: set[str] | None = None,
    screen_budget: float = 600.0,
    rollback_always: bool = False,
) -> dict[str, object]:
    """Event rules on ``samples`` recent bets (all enabled rules together, and each rule on
    its own) and the daily screening rule by rule; ``only`` restricts to some rule ids."""
    from sqlmodel import Session

    from rules.engine import _run, active_rules, run_event_rules
    from rules.kinds import REGISTRY
    from rules.types import Trigger
    from store.db import get_engine

    engine = get_engine(url)
    queries = [0]

    @sa_event.listens_for(engine, "before_cursor_execute")
    def _count(*_args: object) -> None:
        queries[0] += 1

    with Session(engine) as session:
        rules = [r for r in active_rules(session=session) if r.enabled]
        session.commit()  # numbers the rule versions once
        last = session.exec(text("SELECT max(id) FROM bets")).one()[0]  # type: ignore[call-overload]
    if only:
        rules = [r for r in rules if r.id in only]
    rng = np.random.default_rng(seed)
    # recent bets (the last ~2 days of history), as the pipeline sees them
    ids = rng.integers(max(1, last - 5000), last + 1, samples + 20)
    timings: dict[str, list[float]] = {"bet_placed": [], "slip_clustered": [], "both": []}
    cpu: list[float] = []  # this process's CPU for both triggers (the rest is waiting)
    per_event_queries: list[int] = []
    per_rule: dict[str, list[float]] = {r.id: [] for r in rules}
    raised = 0
    for n, bet_id in enumerate(ids):
        with Session(engine) as session:
            row = session.exec(
                text(  # type: ignore[call-overload]
                    "SELECT b.placed_at, b.customer_id, s.id, m.cluster_id FROM bets b "
                    "JOIN slips s ON s.bet_id = b.id JOIN cluster_members m ON m.slip_id = s.id "
                    f"WHERE b.id = {int(bet_id)}"
                )
            ).one()
            at, customer_id, slip_id, cluster_id = row
            placed = Trigger(kind="bet_placed", at=at, bet_id=int(bet_id), customer_id=customer_id)
            joined = Trigger(
                kind="slip_clustered",
                at=at,
                bet_id=int(bet_id),
                slip_id=slip_id,
                cluster_id=cluster_id,
                customer_id=customer_id,
            )
            q0, c0 = queries[0], time.process_time()
            t0 = time.perf_counter()
            if only:
                a = _run(session, rules, placed, at)
                t1 = time.perf_counter()
                b = _run(session, rules, joined, at)
            else:
                a = run_event_rules(session=session, trigger=placed, now=at)
                t1 = time.perf_counter()
                b = run_event_rules(session=session, trigger=joined, now=at)
            t2 = time.perf_counter()
            spent_cpu, spent_queries = time.process_time() - c0, queries[0] - q0
            _end(session, a + b, rollback_always)
            if n >= 20:
                for rule in rules:  # each rule alone, both triggers
                    r0 = time.perf_counter()
                    wrote = []
                    for trig in (placed, joined):
                        if trig.kind in REGISTRY[rule.kind].triggers:
                            wrote += _run(session, [rule], trig, at)
                    per_rule[rule.id].append((time.perf_counter() - r0) * 1000)
                    _end(session, wrote, rollback_always)
        if n >= 20:  # warm-up: connection pool, rule files, plan cache
            timings["bet_placed"].append((t1 - t0) * 1000)
            timings["slip_clustered"].append((t2 - t1) * 1000)
            timings["both"].append((t2 - t0) * 1000)
            cpu.append(spent_cpu * 1000)
            per_event_queries.append(spent_queries)
            raised += len(a) + len(b)
    event = {
        k: {
            "p50_ms": round(statistics.median(v), 2),
            "p95_ms": round(_percentile(v, 95), 2),
            "p99_ms": round(_percentile(v, 99), 2),
            "mean_ms": round(statistics.fmean(v), 2),
        }
        for k, v in timings.items()
    }
    event_by_rule = {
        k: {"p50_ms": round(statistics.median(v), 2), "p99_ms": round(_percentile(v, 99), 2)}
        for k, v in per_rule.items()
    }
    # the machine's own latency, to read the figures against: one trivial round trip
    with Session(engine) as session:
        trips = []
        for _ in range(200):
            t0 = time.perf_counter()
            session.exec(text("SELECT 1")).one()  # type: ignore[call-overload]
            trips.append((time.perf_counter() - t0) * 1000)
    screening: dict[str, object] = {}
    total = 0.0
    alerts = 0
    for rule in rules:
        if "schedule" not in REGISTRY[rule.kind].triggers:
            continue
        if total > screen_budget:
            screening[rule.id] = "skipped: screening budget spent"
            continue
        with Session(engine) as session:
            t0 = time.perf_counter()
            found = _run(session, [rule], Trigger(kind="schedule", at=END), END)
            spent = time.perf_counter() - t0
            session.rollback()
        total += spent
        alerts += len(found)
        screening[rule.id] = {"seconds": round(spent, 2), "alerts": len(found)}
        print(f"screening {rule.id}: {spent:.2f} s, {len(found)} alerts", file=sys.stderr)
    return {
        "rules_enabled": len(rules),
        "rollback_always": rollback_always,
        "event_samples": samples,
        "event": event,
        "event_both_cpu_p50_ms": round(statistics.median(cpu), 2),
        "event_both_cpu_p95_ms": round(_percentile(cpu, 95), 2),
        "event_both_queries_mean": round(statistics.fmean(per_event_queries), 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "select_1_roundtrip_p50_ms": round(statistics.median(trips), 3),
        "event_alerts_per_sample": round(raised / max(1, samples), 2),
        "event_by_rule": event_by_rule,
        "screening_seconds": round(total, 2),
        "screening_alerts": alerts,
        "screening_by_rule": screening,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bets", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--reuse", help="an existing filled database name (skip the fill)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--rollback-always",
        action="store_true",
        help="roll back every event run (default: commit those that wrote nothing)",
    )
    parser.add_argument("--rules", help="comma-separated rule ids to time (default: all)")
    parser.add_argument(
        "--screen-budget",
        type=float,
        default=600.0,
        help="stop timing further screening rules after this many seconds",
    )
    args = parser.parse_args()
    from store.db import dispose_engines, migrate

    result: dict[str, object] = {}
    if args.reuse:
        name, url = args.reuse, f"{PG}/{args.reuse}"
        migrate(url)
    else:
        name = f"sliplink_bench_rules_{uuid.uuid4().hex[:6]}"
        url = _create_database(name)
        migrate(url)
        result |= fill(url, n_bets=args.bets, seed=args.seed)
        print(json.dumps(result), file=sys.stderr)
    result["prewarm_seconds"] = prewarm(url)
    only = set(args.rules.split(",")) if args.rules else None
    result |= time_rules(
        url,
        samples=args.samples,
        seed=args.seed,
        only=only,
        screen_budget=args.screen_budget,
        rollback_always=args.rollback_always,
    )
    result["database"] = name
    dispose_engines()
    if not args.keep and not args.reuse:
        admin = create_engine(f"{PG}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    out = ROOT / "bench" / "results" / "rules.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
