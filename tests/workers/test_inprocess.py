"""The embedded default: the same stages on a thread pool, no broker; plus the sweeper and
the flow monitor on their own."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from store.clustering import ClusterMember, Embedding
from store.models import Slip, SlipStatus, utcnow
from store.settings import Settings
from tests.factories import make_bet
from tests.workers.conftest import model_path, slip_images
from workers.config import PipelineConfig
from workers.pipeline import InProcessPipeline, monitor_flow, pipeline_for, sweep


def test_in_process_pipeline_extracts_and_assigns(db_url, tmp_path, keys):  # type: ignore[no-untyped-def]
    from api.main import create_app

    settings = Settings(
        environment="test", database_url=db_url, data_dir=tmp_path, model_path=model_path()
    )
    pipeline = pipeline_for(settings)
    assert isinstance(pipeline, InProcessPipeline) and pipeline.ping() == "ok"
    app = create_app(settings, pipeline=pipeline)
    try:
        with TestClient(app, headers={"X-API-Key": keys.admin}) as client:
            ids = []
            for data in slip_images(6):
                bet = client.post(
                    "/bets",
                    json={
                        "amount": 2.0,
                        "betType": "Win",
                        "sport": "Tennis",
                        "description": "A v B",
                    },
                )
                resp = client.post(
                    f"/bets/{bet.json()['id']}/slip", files={"slip": ("s.jpg", data)}
                )
                assert resp.status_code == 202
                ids.append(resp.json()["id"])
            # the same bytes again: no second task, no second row
            assert (
                client.post(
                    f"/bets/{bet.json()['id']}/slip", files={"slip": ("s.jpg", data)}
                ).status_code
                == 200
            )
            assert pipeline.wait_idle(180)
            bodies = [client.get(f"/slips/{i}").json() for i in ids]
            assert [b["status"] for b in bodies] == ["ready"] * 6
            assert all(b["features"]["dim"] > 0 for b in bodies)
            metrics = client.get("/metrics").text
            assert 'sliplink_slips{status="ready"} 6.0' in metrics
            assert 'sliplink_task_duration_seconds_count{step="embed"}' in metrics
            assert client.get("/readyz").json()["checks"]["broker"] == "ok"
        with Session(app.state.engine) as s:
            assert len(s.exec(select(Embedding)).all()) == 6
            assert sorted(m.slip_id for m in s.exec(select(ClusterMember)).all()) == sorted(ids)
        # a slip submitted twice is stopped the second time, nothing is duplicated
        pipeline.submit(ids[0])
        assert pipeline.wait_idle(60)
        with Session(app.state.engine) as s:
            assert len(s.exec(select(Embedding)).all()) == 6
    finally:
        pipeline.shutdown()


def test_sweeper_finds_lost_slips(session, settings):  # type: ignore[no-untyped-def]
    from store.access import SYSTEM
    from store.slips import store_slip
    from tests.factories import scan_bytes

    config = PipelineConfig(pending_grace_s=60, backlog_grace_s=600, lease_s=200)
    old = utcnow() - timedelta(minutes=5)
    slips = []
    for seed, status in (
        (1, SlipStatus.pending),
        (2, SlipStatus.processing),
        (3, SlipStatus.pending),
    ):
        bet = make_bet(session)
        slip, _ = store_slip(
            session=session,
            bet_id=bet.id,
            data=scan_bytes(seed=seed),
            actor=SYSTEM,
            max_bytes=10**7,
            max_pixels=10**7,
        )
        slip.status = status
        slip.updated_at = old if seed < 3 else utcnow()  # the third is still within grace
        session.add(slip)
        slips.append(slip.id)
    session.commit()
    result = sweep(settings=settings, config=config, queue_depths={"extract": 0})
    assert result.extract == slips[:2]
    session.expire_all()
    assert session.get(Slip, slips[1]).status == SlipStatus.pending  # its lease was over
    # swept slips start a new grace period: not re-sent on the next sweep
    assert sweep(settings=settings, config=config, queue_depths={"extract": 0}).extract == []
    # with a backlog in the extract queue, pending slips are left to the queue for longer
    s3 = session.get(Slip, slips[2])
    s3.updated_at = old
    session.add(s3)
    session.commit()
    assert sweep(settings=settings, config=config, queue_depths={"extract": 5}).extract == []
    long_ago = PipelineConfig(pending_grace_s=60, backlog_grace_s=300, lease_s=300)
    swept = sweep(settings=settings, config=long_ago, queue_depths={"extract": 5})
    assert swept.extract == [slips[2]]


def test_sweeper_re_embeds_after_a_new_model_is_activated(session, settings):  # type: ignore[no-untyped-def]
    import numpy as np

    from store import clustering
    from store.access import SYSTEM
    from store.slips import store_slip
    from tests.factories import scan_bytes

    clustering.activate_model(session=session, version="v1", path=None)
    ids = []
    for seed in (1, 2):
        bet = make_bet(session)
        slip, _ = store_slip(
            session=session,
            bet_id=bet.id,
            data=scan_bytes(seed=seed),
            actor=SYSTEM,
            max_bytes=10**7,
            max_pixels=10**7,
        )
        slip.status = SlipStatus.ready
        session.add(slip)
        session.flush()
        clustering.store_embedding(
            session=session,
            slip_id=slip.id,
            model_version="v1",
            vector=np.ones(4, np.float32) / 2,
            usable=True,
            quality={},
        )
        session.add(ClusterMember(slip_id=slip.id, model_version="v1", cluster_id=None))
        ids.append(slip.id)
    session.commit()
    config = PipelineConfig(pending_grace_s=0)
    assert sweep(settings=settings, config=config, queue_depths={}).extract == []
    clustering.activate_model(session=session, version="v2", path=None)
    session.commit()
    assert sweep(settings=settings, config=config, queue_depths={}).extract == ids
    # a busy extract queue holds the next batch back
    assert sweep(settings=settings, config=config, queue_depths={"extract": 3}).extract == []


def test_flow_monitor_raises_on_lag(session, settings):  # type: ignore[no-untyped-def]
    from store.access import SYSTEM
    from store.slips import store_slip
    from tests.factories import scan_bytes

    bet = make_bet(session)
    slip, _ = store_slip(
        session=session,
        bet_id=bet.id,
        data=scan_bytes(seed=5),
        actor=SYSTEM,
        max_bytes=10**7,
        max_pixels=10**7,
    )
    slip.uploaded_at = utcnow() - timedelta(minutes=20)
    session.add(slip)
    session.commit()
    config = PipelineConfig(lag_alert_s=300, silence_alert_s=10**9)
    problems = monitor_flow(settings=settings, config=config)
    assert len(problems) == 1 and "lags" in problems[0]
    assert monitor_flow(settings=settings, config=PipelineConfig(lag_alert_s=3600)) == []
    session.expire_all()
    from store.alerts import Alert

    alerts = session.exec(select(Alert).where(Alert.rule_id == "system.pipeline_lag")).all()
    assert len(alerts) == 1 and alerts[0].hits >= 1


def test_in_process_backlog_is_bounded(settings):  # type: ignore[no-untyped-def]
    """Under a sustained overload new tasks are dropped (and counted) instead of piling up
    in memory; a dropped slip stays pending for the sweeper."""
    import threading

    from workers.metrics import DROPPED

    pipeline = InProcessPipeline(settings, config=PipelineConfig(inprocess_backlog=2),
                                 scheduler=False)  # fmt: skip
    release = threading.Event()
    try:
        before = DROPPED.labels(queue="rules")._value.get()
        pipeline._go(pipeline._rules, "rules", release.wait)  # the rules thread is busy
        trigger = {"kind": "bet_placed", "at": utcnow().isoformat(), "bet_id": 1,
                   "customer_id": None}  # fmt: skip
        for _ in range(3):
            pipeline.submit_rules(trigger)
        assert pipeline.queue_depths()["rules"] == 2  # one running, one waiting
        assert DROPPED.labels(queue="rules")._value.get() - before == 2
        release.set()
        assert pipeline.wait_idle(60)
    finally:
        release.set()
        pipeline.shutdown()


def test_stages_run_in_lower_priority_children_and_survive_one_being_killed(session, settings):  # type: ignore[no-untyped-def]
    """The API process keeps its CPU and GIL for requests: stages run in child processes of
    lower priority.  A child killed mid-way (out of memory, an operator) breaks the pool;
    new children take over and the slips still get done, once each."""
    import os
    import signal

    from store.access import SYSTEM
    from store.slips import store_slip

    def nice(pid: int) -> int:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[16])

    config = PipelineConfig(inprocess_isolation=True)
    pipeline = InProcessPipeline(settings.model_copy(update={"model_path": model_path()}),
                                 config=config, scheduler=False)  # fmt: skip
    ids = []
    for data in slip_images(2):
        slip, _ = store_slip(session=session, bet_id=make_bet(session).id, data=data,
                             actor=SYSTEM, max_bytes=10**8, max_pixels=10**8)  # fmt: skip
        session.commit()
        ids.append(slip.id)
    try:
        pipeline.submit(ids[0])
        assert pipeline.wait_idle(240)
        children = pipeline.child_pids()
        assert children and os.getpid() not in children
        assert all(nice(pid) > nice(os.getpid()) or nice(pid) == 19 for pid in children)
        os.kill(children[0], signal.SIGKILL)
        pipeline.submit(ids[1])
        assert pipeline.wait_idle(240)
        assert set(pipeline.child_pids()).isdisjoint(children)
        session.expire_all()
        assert [session.get(Slip, i).status for i in ids] == [SlipStatus.ready] * 2
        assert len(session.exec(select(Embedding)).all()) == 2
        assert len(session.exec(select(ClusterMember)).all()) == 2
    finally:
        pipeline.shutdown()
