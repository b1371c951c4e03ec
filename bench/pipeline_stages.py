"""CPU per slip of each stage of the slip path, one stage at a time, in this process.

``bench/pipeline.py`` measures the whole pipeline with real Celery workers; its CPU figures
are totals per process.  This splits them: on a fresh PostgreSQL database, N bets and slips
go through the real API (TestClient; the tasks they would enqueue are recorded, not sent),
then each stage runs over all of them in turn, exactly as a worker runs it (the functions of
``workers.pipeline``): the rules of ``bet_placed``, extraction (``cv.embed`` timed on its
own), assignment, the rules of ``slip_clustered``.  For each stage: CPU ms per item of this
process and of the database backends of the run's database, and the SQL statements per item
(through SQLAlchemy, commits included; extraction's binary image fetch on the raw psycopg
cursor is one more).  Celery's own cost is what ``bench/pipeline.py``'s worker CPU has on
top of these.

    .venv/bin/python bench/pipeline_stages.py --slips 60

The 125 sample slips hardly link at the model's threshold (0 of 60 slips clustered, so the
rules of ``slip_clustered`` do not run); past 125 the slips are cropped copies of the first
ones, which cluster with them: ``--slips 140`` measures those rules too (16 of 140 slips).

The stages run one after the other, so the rules of ``bet_placed`` see every bet of the run
(in the pipeline they see the bets placed before theirs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from sqlalchemy import create_engine, event  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from bench.machine import reference  # noqa: E402
from bench.pipeline import _database, _drop, _images, _service_cpu, _service_delta  # noqa: E402


class Recorder:
    """The pipeline interface of the API, recording what it would enqueue."""

    def __init__(self) -> None:
        self.extract: list[int] = []
        self.rules: list[dict[str, Any]] = []

    def submit(self, slip_id: int, model_version: str | None = None) -> None:
        self.extract.append(slip_id)

    def submit_rules(self, trigger: dict[str, Any]) -> None:
        self.rules.append(trigger)

    def ping(self) -> str:
        return "ok"

    def queue_depths(self) -> dict[str, int]:
        return {}

    def shutdown(self) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slips", type=int, default=60)
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--sql", action="store_true", help="list the statements of each stage")
    args = ap.parse_args()

    from fastapi.testclient import TestClient

    from api.main import create_app
    from store.access import create_api_key
    from store.db import get_engine, session_scope
    from store.models import Role
    from store.settings import Settings
    from workers import model as models
    from workers import pipeline as pl

    pl.single_threaded_math()
    n = args.slips
    images = _images(n + 2)
    url = _database(args.pg)
    poll = create_engine(url, pool_size=1)
    tmp = Path(tempfile.mkdtemp(prefix="sliplink-stages-"))
    statements: Counter[str] = Counter()

    @event.listens_for(Engine, "before_cursor_execute")
    def _count(_conn, _cursor, statement, _params, _context, _many) -> None:  # type: ignore[no-untyped-def]
        statements[" ".join(statement.split())[:110]] += 1

    @event.listens_for(Engine, "commit")
    def _commit(_conn) -> None:  # type: ignore[no-untyped-def]
        statements["COMMIT"] += 1

    out: dict[str, Any] = {"slips": n}

    def stage(name: str, items: Iterable[Any], fn: Callable[[Any], object]) -> None:
        items = list(items)
        k = max(len(items), 1)
        services = _service_cpu(poll)
        statements.clear()
        cpu = time.process_time()
        for item in items:
            fn(item)
        cpu = time.process_time() - cpu
        db = _service_delta(poll, services)["db"]
        out[name] = {
            "items": len(items),
            "cpu_ms": round(1000 * cpu / k, 2),
            "db_ms": round(1000 * db / k, 2),
            "statements": round(sum(statements.values()) / k, 2),
        }
        if args.sql:
            print(f"== {name}", file=sys.stderr)
            for text, count in statements.most_common(30):
                print(f"   {count / k:6.2f}  {text}", file=sys.stderr)

    try:
        settings = Settings(environment="test", database_url=url, data_dir=tmp)
        recorder = Recorder()
        app = create_app(settings, pipeline=recorder)
        with session_scope(get_engine(url)) as s:
            _, key = create_api_key(session=s, name="bench", role=Role.admin)
        bets: list[int] = []
        with TestClient(app, headers={"X-API-Key": key}) as client:

            def post_bet(_: object) -> None:
                body = {"amount": 5.0, "betType": "Win", "sport": "Tennis", "description": "A v B"}
                bets.append(client.post("/bets", json=body).json()["id"])

            def post_slip(item: tuple[int, bytes]) -> None:
                resp = client.post(f"/bets/{item[0]}/slip", files={"slip": ("s.jpg", item[1])})
                assert resp.status_code == 202, resp.text

            # warm-up: two slips through every stage (imports, model load, index build)
            for data in images[:2]:
                post_bet(None)
                post_slip((bets[-1], data))
            for trigger in recorder.rules:
                pl.rules_stage(trigger, settings)
            for sid in recorder.extract:
                version = pl.extract_stage(sid, None, settings).model_version
                for trigger in pl.assign_stage(sid, version, settings).triggers:
                    pl.rules_stage(trigger, settings)
            recorder.extract.clear()
            recorder.rules.clear()
            bets.clear()
            stage("api_post_bet", range(n), post_bet)
            stage("api_upload_slip", zip(bets, images[2:], strict=True), post_slip)
        stage("rules_bet_placed", recorder.rules, lambda t: pl.rules_stage(t, settings))

        embed_cpu, extract = 0.0, models.extract

        def timed_extract(model: Any, image: Any) -> Any:
            nonlocal embed_cpu
            started = time.process_time()
            try:
                return extract(model, image)
            finally:
                embed_cpu += time.process_time() - started

        versions: dict[int, str] = {}

        def extract_one(sid: int) -> None:
            versions[sid] = pl.extract_stage(sid, None, settings).model_version

        models.extract = timed_extract
        try:
            stage("extract", recorder.extract, extract_one)
        finally:
            models.extract = extract
        embed_ms = 1000 * embed_cpu / max(len(recorder.extract), 1)
        out["extract"]["of_it_cv_embed_ms"] = round(embed_ms, 2)
        triggers: list[dict[str, Any]] = []

        def assign_one(sid: int) -> None:
            triggers.extend(pl.assign_stage(sid, versions.get(sid), settings).triggers)

        stage("assign", recorder.extract, assign_one)
        stage("rules_slip_clustered", triggers, lambda t: pl.rules_stage(t, settings))
    finally:
        poll.dispose()
        _drop(args.pg, url)
        shutil.rmtree(tmp, ignore_errors=True)
    out["machine"] = reference()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
