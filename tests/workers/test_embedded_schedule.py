"""The embedded default runs the beat schedule in process: the same entries, the same stage
functions.  A real ``sliplink serve`` (no broker) finishes a model rollout that another
process started; the daily jobs fire at their crontab times on the scheduler's clock."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select

from store import models_registry as registry
from store.clustering import Embedding
from store.db import get_engine
from tests.conftest import REPO_ROOT
from tests.workers.conftest import free_port, model_path, slip_images, wait_for
from tests.workers.test_schedule import _register, _statuses
from workers.config import PipelineConfig
from workers.pipeline import InProcessPipeline
from workers.schedule import EmbeddedScheduler, beat_schedule


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def test_every_beat_task_has_an_in_process_job(settings):  # type: ignore[no-untyped-def]
    pipeline = InProcessPipeline(settings, scheduler=False)
    try:
        jobs = pipeline.scheduled_jobs()
        assert {e["task"] for e in beat_schedule(PipelineConfig()).values()} <= set(jobs)
        with pytest.raises(ValueError, match="sliplink.drift"):
            EmbeddedScheduler(PipelineConfig(), {k: v for k, v in jobs.items() if "drift" not in k})
    finally:
        pipeline.shutdown()


def test_entries_fire_at_their_beat_times(settings):  # type: ignore[no-untyped-def]
    ran: list[str] = []
    config = PipelineConfig(sweep_every_s=10)
    tasks = {e["task"] for e in beat_schedule(config).values()}
    jobs = {t: (lambda t=t: ran.append(t)) for t in tasks}
    clock = Clock(datetime(2026, 1, 4, 23, 59, 0, tzinfo=UTC))  # a Sunday
    scheduler = EmbeddedScheduler(config, jobs, now=clock)

    def step(to: datetime) -> set[str]:
        clock.at = to
        fired = set(scheduler.due())
        wait_for(lambda: not scheduler._running, timeout=10, what="the jobs to finish")
        return fired

    assert step(clock.at + timedelta(seconds=1)) == set()  # nothing is due at start
    assert step(clock.at + timedelta(seconds=4)) == {"sliplink.sweep"}  # the lease check
    often = {"sliplink.sweep", "sliplink.rollout_tick"}
    assert step(clock.at + timedelta(seconds=6)) == often  # 11 s after start
    assert step(datetime(2026, 1, 5, 0, 5, 1, tzinfo=UTC)) == often | {
        "sliplink.flow",
        "sliplink.exclusions",
    }
    assert step(datetime(2026, 1, 5, 3, 0, 1, tzinfo=UTC)) == often | {
        "sliplink.flow",
        "sliplink.recluster",
    }
    assert step(datetime(2026, 1, 5, 5, 0, 1, tzinfo=UTC)) >= {"sliplink.drift"}  # Monday
    assert step(datetime(2026, 1, 6, 5, 0, 1, tzinfo=UTC)) >= {
        "sliplink.purge",
        "sliplink.screening",
        "sliplink.exclusions",
        "sliplink.recluster",
    }
    assert ran.count("sliplink.drift") == 1  # weekly


def test_the_daily_exclusion_pass_runs_in_process_at_its_time(session, settings):  # type: ignore[no-untyped-def]
    ids = _register(session)
    pipeline = InProcessPipeline(settings, scheduler=False)
    clock = Clock(datetime.now(UTC).replace(hour=0, minute=4, second=0, microsecond=0))
    scheduler = EmbeddedScheduler(pipeline.config, pipeline.scheduled_jobs(), now=clock)
    try:
        clock.at += timedelta(minutes=1, seconds=1)  # 00:05:01
        assert "sliplink.exclusions" in scheduler.due()
        wait_for(lambda: scheduler.runs["sliplink.exclusions"] == 1, timeout=60,
                 what="the exclusion pass")  # fmt: skip
        assert _statuses(settings.effective_database_url, ids) == [
            "self_excluded",
            "active",
            "self_excluded",
        ]
    finally:
        scheduler.stop()
        pipeline.shutdown()


def _second_model(out: Path):  # type: ignore[no-untyped-def]
    """The shipped model under a version of its own (another seed recorded)."""
    from cv.embed import DEFAULT_MODEL_PATH, EmbeddingModel

    model = EmbeddingModel.load(model_path() or DEFAULT_MODEL_PATH)
    model.random_state = 8123
    model.version_ = model._compute_version()
    model.save(out)
    return model


@pytest.mark.slow
def test_embedded_serve_finishes_a_rollout_started_elsewhere(tmp_path):  # type: ignore[no-untyped-def]
    """A rollout recorded in the database by another process (``sliplink models activate``
    against the same database, or a server restarted mid-rollout) is carried to its end by
    the embedded server's rollout tick, as beat's tick does with Celery workers."""
    from store.access import create_api_key
    from store.db import session_scope
    from store.models import Role

    db = tmp_path / "serve.db"
    url = f"sqlite:///{db}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPLINK_")}
    env |= {
        "PYTHONPATH": str(REPO_ROOT),
        "SLIPLINK_ENVIRONMENT": "test",
        "SLIPLINK_DATABASE_URL": url,
        "SLIPLINK_DATA_DIR": str(tmp_path / "data"),
        "SLIPLINK_SWEEP_SECONDS": "1",
        "OMP_NUM_THREADS": "1",
    }
    if model_path() is not None:
        env["SLIPLINK_MODEL_PATH"] = str(model_path())
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-c", "from cli.main import app; app()", "serve", "--port", str(port)],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, timeout=120, what="sliplink serve to come up")
        with session_scope(get_engine(url)) as s:
            _, key = create_api_key(session=s, name="t-admin", role=Role.admin)
        client = httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30)
        slip_ids = []
        for data in slip_images(2):
            bet = client.post("/bets", json={"amount": 2.0, "betType": "Win", "sport": "Tennis",
                                             "description": "A v B"})  # fmt: skip
            resp = client.post(f"/bets/{bet.json()['id']}/slip", files={"slip": ("s.jpg", data)})
            assert resp.status_code == 202, resp.text
            slip_ids.append(resp.json()["id"])
        wait_for(
            lambda: all(client.get(f"/slips/{i}").json()["status"] == "ready" for i in slip_ids),
            timeout=300, every=1.0, what="the slips to be extracted",
        )  # fmt: skip
        new = _second_model(tmp_path / "second.npz")
        with session_scope(get_engine(url)) as s:
            old = registry.serving_version(session=s)
            registry.register_model(
                session=s, model=new, data=(tmp_path / "second.npz").read_bytes()
            )
            registry.start_rollout(session=s, version=new.version, actor="other-process")
        assert old and old != new.version

        def switched() -> bool:
            with Session(get_engine(url)) as s:
                return registry.serving_version(session=s) == new.version

        wait_for(switched, timeout=300, every=1.0, what="the embedded server to finish the rollout")
        with Session(get_engine(url)) as s:
            rows = s.exec(select(Embedding.slip_id).where(Embedding.model_version == new.version))
            assert sorted(rows.all()) == sorted(slip_ids)
            assert registry.latest_rollout(session=s).state == "complete"  # type: ignore[union-attr]
        client.close()
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        log.close()


def test_an_inline_rollout_waits_while_another_runner_holds_the_last_batches(  # type: ignore[no-untyped-def]
    settings, monkeypatch
):
    """Two runners share a rollout by its cursor; the one with nothing left to send waits
    for the other (it used to spin on the database until the batches came in)."""
    from types import SimpleNamespace

    from workers import rollout

    idle = {"rollout": 1, "state": "running", "sent": 0, "finish": False}
    steps = [idle, idle, {"rollout": 1, "state": "finishing", "sent": 0, "finish": False}, {}]
    monkeypatch.setattr(rollout, "tick", lambda **_: steps.pop(0))
    slept: list[float] = []
    monkeypatch.setattr(rollout, "time", SimpleNamespace(sleep=slept.append))
    assert rollout.run_inline(settings=settings) == {"switched": False}
    assert slept == [rollout.IDLE_WAIT_S] * 3 and not rollout.inline_running()


def test_the_scheduled_tick_leaves_a_rollout_run_by_this_process_alone(  # type: ignore[no-untyped-def]
    session, settings, monkeypatch
):
    import threading

    from workers import rollout

    session.add(registry.ModelRollout(version="v-next", actor="ml1"))  # running
    session.commit()

    inside, release = threading.Event(), threading.Event()

    def held_tick(**_):  # type: ignore[no-untyped-def]
        inside.set()
        release.wait(30)
        return {}

    monkeypatch.setattr(rollout, "tick", held_tick)
    pipeline = InProcessPipeline(settings, scheduler=False)
    ran: list[object] = []
    monkeypatch.setattr(pipeline, "_run", lambda *args: ran.append(args) or [])
    runner = threading.Thread(target=lambda: rollout.run_inline(settings=settings))
    try:
        runner.start()  # an activation through the API runs it on a thread of its own
        assert inside.wait(30) and rollout.inline_running()
        pipeline.rollout_now()
        assert ran == []
        release.set()
        runner.join(30)
        pipeline.rollout_now()  # nobody runs it here now: the tick takes it on
        assert len(ran) == 1
    finally:
        release.set()
        pipeline.shutdown()
