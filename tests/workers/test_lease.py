"""A live worker keeps its slip's lease by heartbeat, a dead one loses it within the lease;
the assignment index reads each embedding once, including those committed out of id order."""

from __future__ import annotations

import time

import numpy as np
from sqlmodel import Session, select

from store import clustering
from store.access import SYSTEM
from store.models import Slip, SlipStatus, utcnow
from store.slips import store_slip
from tests.factories import make_bet, scan_bytes
from workers.config import PipelineConfig
from workers.pipeline import Assigner, LeaseHeartbeat, sweep

VERSION = "test-model-v1"


def _slip(session: Session, seed: int, status: SlipStatus = SlipStatus.processing) -> int:
    bet = make_bet(session)
    slip, _ = store_slip(
        session=session, bet_id=bet.id, data=scan_bytes(seed=seed), actor=SYSTEM,
        max_bytes=10**7, max_pixels=10**7,
    )  # fmt: skip
    slip.status, slip.updated_at = status, utcnow()
    session.add(slip)
    session.commit()
    return int(slip.id)  # type: ignore[arg-type]


def test_heartbeat_keeps_the_lease_and_a_silent_worker_loses_it(session, settings, engine):  # type: ignore[no-untyped-def]
    config = PipelineConfig(lease_s=1.2, pending_grace_s=60)
    alive, dead = _slip(session, 1), _slip(session, 2)
    beat = LeaseHeartbeat(engine, alive, every=config.heartbeat_s)
    try:
        time.sleep(config.lease_s + 0.6)
        swept = sweep(settings=settings, config=config, queue_depths={"extract": 0})
        assert swept.extract == [dead]  # the beating worker keeps its slip
        session.expire_all()
        assert session.get(Slip, alive).status == SlipStatus.processing
        assert session.get(Slip, dead).status == SlipStatus.pending
    finally:
        beat.stop()
    time.sleep(config.lease_s + 0.3)  # the worker stopped beating: its lease runs out
    swept = sweep(settings=settings, config=config, queue_depths={"extract": 0})
    assert swept.extract == [alive]


def test_heartbeat_never_brings_a_swept_slip_back_to_processing(session, engine):  # type: ignore[no-untyped-def]
    slip_id = _slip(session, 3, status=SlipStatus.pending)
    before = session.get(Slip, slip_id).updated_at
    beat = LeaseHeartbeat(engine, slip_id, every=0.1)
    time.sleep(0.4)
    beat.stop()
    session.expire_all()
    row = session.get(Slip, slip_id)
    assert row.status == SlipStatus.pending and row.updated_at == before


def _store(session: Session, slip_id: int, axis: int, *, version: str = VERSION) -> int:
    v = np.zeros(8, np.float32)
    v[axis] = 1.0
    emb, _ = clustering.store_embedding(
        session=session, slip_id=slip_id, model_version=version, vector=v, usable=True,
        quality={},
    )  # fmt: skip
    return int(emb.id)  # type: ignore[arg-type]


def test_index_reads_embeddings_committed_out_of_id_order_once(session, engine, db_url):  # type: ignore[no-untyped-def]
    slips = [_slip(session, 10 + i, status=SlipStatus.ready) for i in range(5)]
    assigner = Assigner(VERSION)
    _store(session, slips[0], 0)
    _store(session, slips[1], 1, version="another-model")  # read as an id only
    session.commit()
    assigner.refresh(session, dim=8)
    assert sorted(assigner.index.ids.tolist()) == [slips[0]]
    if db_url.startswith("postgresql"):
        # a slow transaction takes an id first and commits after a later one
        with Session(engine) as slow:
            late_id = _store(slow, slips[2], 2)
            _store(session, slips[3], 3)
            session.commit()
            assigner.refresh(session, dim=8)
            assert late_id in assigner.pending
            assert sorted(assigner.index.ids.tolist()) == [slips[0], slips[3]]
            slow.commit()
    else:  # SQLite serialises writers: ids are visible in order
        _store(session, slips[2], 2)
        _store(session, slips[3], 3)
        session.commit()
    session.commit()  # a new snapshot
    assigner.refresh(session, dim=8)
    assert sorted(assigner.index.ids.tolist()) == [slips[0], slips[2], slips[3]]
    assert not assigner.pending
    # nothing is read twice: no replaced rows (tombstones) in the index
    _store(session, slips[4], 4)
    session.commit()
    for _ in range(2):
        assigner.refresh(session, dim=8)
    assert len(assigner.index) == 4 and assigner.index._index.ntotal == 4


def test_first_read_with_an_old_backlog_of_other_versions(session, engine):  # type: ignore[no-untyped-def]
    """Below the look-back window only this version's rows are read; rows of another
    version there are not asked for again and again."""
    slips = [_slip(session, 20 + i, status=SlipStatus.ready) for i in range(3)]
    for i, sid in enumerate(slips):
        _store(session, sid, i, version="old-model")
        _store(session, sid, i)
    session.commit()
    assigner = Assigner(VERSION)
    assigner.refresh(session, dim=8)
    assert sorted(assigner.index.ids.tolist()) == slips
    assert not assigner.pending
    rows = session.exec(select(clustering.Embedding.id)).all()
    assert assigner.last_embedding == max(rows)


def test_assigning_leaves_no_replaced_row_in_the_index(session, settings, monkeypatch):  # type: ignore[no-untyped-def]
    """The assigned slip's own vector is read by the refresh; adding it again would leave a
    tombstone per slip and, whenever they make up a quarter of the rows, a full rebuild of
    the index (the real rebuild runs; it is only counted)."""
    from cv.index import VectorIndex
    from workers.pipeline import ASSIGN_STEPS, SlipJob, _assigner, run_steps

    rebuilds = []
    real_rebuild = VectorIndex._rebuild

    def counted(self, **kwargs):  # type: ignore[no-untyped-def]
        rebuilds.append(kwargs)
        return real_rebuild(self, **kwargs)

    monkeypatch.setattr(VectorIndex, "_rebuild", counted)
    clustering.activate_model(session=session, version=VERSION, path=None)
    session.commit()
    for i in range(6):
        sid = _slip(session, 30 + i, status=SlipStatus.ready)
        _store(session, sid, i % 2)  # two writers: joins, a new cluster, a slip alone
        session.commit()
        job = SlipJob(session=session, settings=settings, config=PipelineConfig(),
                      slip_id=sid, model_version=VERSION, threshold=0.8)  # fmt: skip
        assert run_steps(ASSIGN_STEPS, job).status == "done"
    index = _assigner(session, VERSION).index
    assert len(index) == 6 and index._index.ntotal == 6
    assert rebuilds == []


def test_the_lease_check_resends_only_lost_leases(session, settings):  # type: ignore[no-untyped-def]
    """The frequent lease check (between full sweeps) re-sends the slips whose lease ran
    out, and leaves pending slips past their grace to the full sweep."""
    from datetime import timedelta

    config = PipelineConfig(lease_s=10, pending_grace_s=1)
    lost, waiting = _slip(session, 40), _slip(session, 41, status=SlipStatus.pending)
    for sid in (lost, waiting):
        row = session.get(Slip, sid)
        row.updated_at = utcnow() - timedelta(seconds=30)
        session.add(row)
    session.commit()
    swept = sweep(settings=settings, config=config, queue_depths={}, leases_only=True)
    assert (swept.extract, swept.assign) == ([lost], [])
    session.expire_all()
    assert session.get(Slip, lost).status == SlipStatus.pending
    assert sweep(settings=settings, config=config, queue_depths={}).extract == [waiting]
