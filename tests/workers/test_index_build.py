"""The assignment index is built in the background, once: a slip check during the build
answers from the newest slips instead of waiting, an assignment waits for that build rather
than making a second one, and a re-clustering keeps the vector index.

A build is made slow without timing anything: while ``gate`` is closed, every full build
(a fresh index's first read) stops at its first read until the test opens it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import pytest
from sqlmodel import Session, select

from store.clustering import ClusterMember
from tests.store.test_clustering import (
    THRESHOLD,
    VERSION,
    _embed_and_assign,
    _slip,
    _vec,
    world,  # noqa: F401 - the fixture
)
from workers import pipeline
from workers.config import PipelineConfig
from workers.pipeline import ASSIGN_STEPS, SlipJob, run_steps

SAFETY = 60  # seconds: only so that a broken build cannot hang the run
CHECK_WAIT = 20  # seconds: a check that waits this long is waiting for the gated build


class Gate:
    """Holds every full index build at its first read while closed; counts the builds."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.open = threading.Event()
        self.entered = threading.Event()
        self.finished = threading.Event()
        self.builds = 0
        read = pipeline.Assigner._read_embeddings

        def gated(assigner: pipeline.Assigner, session: Session, top: int) -> None:
            if assigner.last_embedding == 0 and len(assigner.index) == 0:
                self.builds += 1
                self.entered.set()
                assert self.open.wait(SAFETY), "the gate was never opened"
                read(assigner, session, top)
                self.finished.set()
                return
            read(assigner, session, top)

        monkeypatch.setattr(pipeline.Assigner, "_read_embeddings", gated)


@pytest.fixture
def stored(world, monkeypatch):  # type: ignore[no-untyped-def]  # noqa: F811
    """Two slips of one hand (a cluster) and one of another, assigned; then the process's
    indexes forgotten, as after a restart."""
    session, settings = world
    a1, a2, b = (_slip(session, seed=i) for i in range(3))
    _embed_and_assign(session, settings, a1, _vec(0))
    _embed_and_assign(session, settings, a2, _vec(0, tilt=0.1))
    _embed_and_assign(session, settings, b, _vec(1))
    monkeypatch.setattr(pipeline, "_assigners", {})
    monkeypatch.setattr(pipeline, "_builds", {}, raising=False)
    return session, settings, (a1, a2, b)


def _match(engine):  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        return pipeline.match_slip(
            session=s, model_version=VERSION, vector=_vec(0, tilt=0.02), threshold=THRESHOLD
        )


def test_a_check_during_the_build_answers_from_the_newest_slips(stored, engine, monkeypatch):  # type: ignore[no-untyped-def]
    session, settings, (a1, a2, b) = stored
    gate = Gate(monkeypatch)
    with ThreadPoolExecutor(2) as pool:
        # the first slip check after a restart starts the build; neither it nor the next
        # check waits for it
        first = pool.submit(_match, engine)
        assert gate.entered.wait(SAFETY)
        try:
            found = pool.submit(_match, engine).result(timeout=CHECK_WAIT)
            first_found = first.result(timeout=CHECK_WAIT)
        except FutureTimeout:
            pytest.fail("a check waited for the index build")
        finally:
            still_building = not gate.finished.is_set()
            gate.open.set()
    assert still_building
    assert found.source == "recent" and found.searched == 3
    assert first_found == found
    cluster = {m.slip_id: m.cluster_id for m in session.exec(select(ClusterMember))}
    assert cluster[a1] == cluster[a2] is not None
    assert found.cluster is not None and found.cluster[0] == cluster[a1]
    assert [n[0] for n in found.neighbours] == [a1, a2, b]

    build = pipeline._builds[(pipeline._key(engine, VERSION))]
    assert build.done.wait(SAFETY) and build.error is None and build.slips == 3
    after = _match(engine)
    assert after.source == "index" and after.searched is None
    # the full index averages the slip against every member of the cluster (exact, float32
    # vectors), the recent slips' search its top members' scores: equal up to rounding here
    assert after.cluster is not None and after.cluster[0] == found.cluster[0]
    assert after.cluster[1] == pytest.approx(found.cluster[1], abs=1e-6)
    assert [n[:1] + (round(n[1], 4),) + n[2:] for n in after.neighbours] == [
        n[:1] + (round(n[1], 4),) + n[2:] for n in found.neighbours
    ]
    assert gate.builds == 1
    assert pipeline.index_status(engine) == {"state": "warm", "model_version": VERSION, "slips": 3}


def test_one_build_however_many_ask_and_an_assignment_waits_for_it(stored, engine, monkeypatch):  # type: ignore[no-untyped-def]
    session, settings, _ = stored
    new = _slip(session, seed=9)
    from store import clustering

    clustering.store_embedding(
        session=session,
        slip_id=new,
        model_version=VERSION,
        vector=_vec(0, tilt=0.2),
        usable=True,
        quality={"flags": []},
    )
    session.commit()
    gate = Gate(monkeypatch)

    def assign() -> str:
        with Session(engine, expire_on_commit=False) as s:
            job = SlipJob(
                session=s,
                settings=settings,
                config=PipelineConfig(),
                slip_id=new,
                model_version=VERSION,
                threshold=THRESHOLD,
            )
            return run_steps(ASSIGN_STEPS, job).status

    with ThreadPoolExecutor(6) as pool:
        pipeline.warm_index_at_start(engine)
        pipeline.warm_index_at_start(engine)
        assert gate.entered.wait(SAFETY)
        assigned = pool.submit(assign)
        checks = [pool.submit(_match, engine) for _ in range(4)]
        try:
            answers = [c.result(timeout=SAFETY) for c in checks]
            assert {a.source for a in answers} == {"recent"}
            assert not assigned.done()  # held by the build, not building its own
        finally:
            gate.open.set()
        assert assigned.result(timeout=SAFETY) == "done"
    assert gate.builds == 1
    cluster = {m.slip_id: m.cluster_id for m in session.exec(select(ClusterMember))}
    assert cluster[new] == answers[0].cluster[0]  # type: ignore[index]
    assert _match(engine).source == "index"
    assert gate.builds == 1


def test_a_recluster_keeps_the_vector_index(stored, engine, monkeypatch):  # type: ignore[no-untyped-def]
    session, settings, (a1, a2, b) = stored
    _match(engine)  # starts the build (a small one may be over before the search)
    build = pipeline._builds[pipeline._key(engine, VERSION)]
    assert build.done.wait(SAFETY)
    assigner = pipeline._assigners[pipeline._key(engine, VERSION)]
    index = assigner.index
    # a re-clustering that separates the pair: memberships replaced, embeddings untouched
    pipeline.recluster(settings=settings, threshold=0.999, model_version=VERSION)
    gate = Gate(monkeypatch)
    gate.open.set()
    after = _match(engine)
    assert assigner.index is index and gate.builds == 0
    cluster = {m.slip_id: m.cluster_id for m in session.exec(select(ClusterMember))}
    assert assigner.slip_cluster == {s: c for s, c in cluster.items() if c is not None}
    assert [n[2] for n in after.neighbours] == [cluster[a1], cluster[a2], cluster[b]]


def test_an_assign_worker_builds_the_index_when_it_starts(  # type: ignore[no-untyped-def]
    pg_url, worker_env, start_worker, shared_broker_url
):
    """A real Celery worker (all queues, so assign too) builds the index of the active
    version at start, before any slip is sent to it."""
    from sqlalchemy import create_engine

    from store import clustering
    from tests.factories import make_shop
    from tests.workers.conftest import queue_prefix, wait_for

    engine = create_engine(pg_url)
    with Session(engine) as s:
        make_shop(s)
        clustering.activate_model(session=s, version=VERSION, path=None)
        s.commit()
        for seed, axis in enumerate((0, 0, 1)):
            clustering.store_embedding(
                session=s,
                slip_id=_slip(s, seed=seed),
                model_version=VERSION,
                vector=_vec(axis, tilt=0.1 * seed),
                usable=True,
                quality={"flags": []},
            )
        s.commit()
    engine.dispose()
    env = worker_env(database_url=pg_url, broker_url=shared_broker_url, prefix=queue_prefix())
    worker = start_worker(env, concurrency=1)
    wait_for(
        lambda: f"assignment index of {VERSION}: 3 slips".encode() in worker.log.read_bytes(),
        timeout=SAFETY,
        what="the worker's start-up index build",
    )


def test_checks_during_the_build_see_slips_stored_meanwhile(stored, engine, monkeypatch):  # type: ignore[no-untyped-def]
    session, settings, (a1, a2, b) = stored
    gate = Gate(monkeypatch)
    try:
        pipeline.warm_index_at_start(engine)
        assert gate.entered.wait(SAFETY)
        assert _match(engine).searched == 3
        from store import clustering

        new = _slip(session, seed=9)
        clustering.store_embedding(
            session=session,
            slip_id=new,
            model_version=VERSION,
            vector=_vec(0, tilt=0.01),
            usable=True,
            quality={"flags": []},
        )
        session.commit()
        found = _match(engine)
        assert found.source == "recent" and found.searched == 4
        assert found.neighbours[0][0] == new and found.neighbours[0][2] is None  # unassigned
    finally:
        gate.open.set()
    build = pipeline._builds[pipeline._key(engine, VERSION)]
    assert build.done.wait(SAFETY) and build.slips == 4
