"""Start-up pays what each server process's first requests used to, and the garbage
collector stops walking what start-up made (bench/ingest.py: the paced phase's tail)."""

from __future__ import annotations

import time
import uuid

import redis
from fastapi.testclient import TestClient
from sqlmodel import Session

from api.routes.bets import WRITER_THREADS

REDIS = "redis://127.0.0.1:6379/15"


def test_start_up_builds_the_route_map_and_fills_the_pool(app, engine) -> None:  # type: ignore[no-untyped-def]
    assert getattr(app.state, "route_templates", None) is None
    with TestClient(app):
        # before any request: the access table's map and the connections a burst needs
        assert "/bets/{bet_id}/slip" in app.state.route_templates.values()
        if engine.dialect.name == "postgresql":
            assert engine.pool.checkedin() >= WRITER_THREADS


def _app_with_broker(settings, broker_url: str, prefix: str):  # type: ignore[no-untyped-def]
    from api.main import create_app
    from workers.client import CeleryPipeline
    from workers.config import PipelineConfig

    settings = settings.model_copy(update={"broker_url": broker_url})
    pipeline = CeleryPipeline(settings, config=PipelineConfig(queue_prefix=prefix))
    return create_app(settings, pipeline=pipeline), pipeline


def test_start_up_opens_the_broker_connection(settings) -> None:  # type: ignore[no-untyped-def]
    prefix = f"test-startup-{uuid.uuid4().hex[:6]}-"
    app, pipeline = _app_with_broker(settings, REDIS, prefix)
    try:
        with TestClient(app):
            assert pipeline._producer is not None
            assert pipeline._producer.connection.connected
    finally:
        pipeline.shutdown()
        r = redis.Redis.from_url(REDIS)
        for key in r.scan_iter(match=f"{prefix}*"):
            r.delete(key)


def test_a_broker_down_at_start_up_neither_stops_nor_slows_it(settings, keys) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import make_shop

    app, pipeline = _app_with_broker(settings, "redis://127.0.0.1:1/15", "test-down-")
    started = time.monotonic()
    with TestClient(app, headers={"X-API-Key": keys.admin}) as client:
        assert time.monotonic() - started < 2  # no connection retries at start
        with Session(app.state.engine) as session:
            shop_id = make_shop(session).id
        leg = {"sport": "Tennis", "event": "A v B", "selection": "A", "odds": 2.5}
        bet = {"shop_id": shop_id, "stake": 5.0, "bet_type": "single", "legs": [leg]}
        resp = client.post("/bets", json=bet)
        assert resp.status_code == 201  # stored; its rules are left for the sweeper
    pipeline.shutdown()


def test_a_burst_on_a_cold_key_cache_reads_the_key_once(app, keys, engine) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    import httpx
    from sqlalchemy import event

    reads = []

    def count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if "FROM api_key" in statement:
            reads.append(statement)

    async def burst() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            headers = {"X-API-Key": keys.analyst}  # not read yet by this process
            answers = await asyncio.gather(
                *(client.get("/bets", headers=headers) for _ in range(16))
            )
        return [r.status_code for r in answers]

    event.listen(engine, "before_cursor_execute", count)
    try:
        assert asyncio.run(burst()) == [200] * 16
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(reads) == 1


def test_a_server_app_leaves_its_start_up_objects_out_of_gc_scans(settings) -> None:  # type: ignore[no-untyped-def]
    import gc

    from api.main import create_app

    app = create_app(settings, pipeline=None, freeze_gc=True)  # as cli.runtime.build_app
    try:
        with TestClient(app):
            # the modules, routes and app: a full collection no longer walks them
            assert gc.get_freeze_count() > 50_000
    finally:
        gc.unfreeze()  # the rest of the test session collects as before
