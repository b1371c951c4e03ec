"""Cluster persistence: incremental assignment, stable ids across re-clusters, human links
honoured, customer attribution.  Hand-made unit vectors stand in for embeddings so the
answers are exact; the assignment and re-clustering code is the pipeline's own."""

from __future__ import annotations

import numpy as np
import pytest
from sqlmodel import Session, select

from store import clustering
from store.access import SYSTEM
from store.clustering import ClusterEvent, ClusterMember, WriterCluster
from store.models import SlipStatus
from store.slips import store_slip
from tests.factories import make_bet, make_customer, make_shop, scan_bytes
from workers.config import PipelineConfig
from workers.pipeline import ASSIGN_STEPS, SlipJob, recluster, run_steps

VERSION = "test-model-v1"
DIM = 8
THRESHOLD = 0.8


def _vec(axis: int, *, tilt: float = 0.0, other: int = 7) -> np.ndarray:
    """A unit vector near basis axis ``axis`` (cosine with the axis = 1/sqrt(1+tilt^2))."""
    v = np.zeros(DIM, np.float32)
    v[axis], v[other] = 1.0, tilt
    return v / np.linalg.norm(v)


def _slip(session: Session, *, seed: int, customer_id: int | None = None) -> int:
    bet = make_bet(session, customer_id=customer_id)
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
    session.commit()
    return int(slip.id)  # type: ignore[arg-type]


def _embed_and_assign(session: Session, settings, slip_id: int, vector: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    clustering.store_embedding(
        session=session,
        slip_id=slip_id,
        model_version=VERSION,
        vector=vector,
        usable=True,
        quality={"flags": []},
    )
    session.commit()
    job = SlipJob(
        session=session,
        settings=settings,
        config=PipelineConfig(),
        slip_id=slip_id,
        model_version=VERSION,
        threshold=THRESHOLD,
    )
    outcome = run_steps(ASSIGN_STEPS, job)
    assert outcome.status == "done", outcome


@pytest.fixture
def world(session, settings):  # type: ignore[no-untyped-def]
    clustering.activate_model(session=session, version=VERSION, path=None)
    session.commit()
    make_shop(session)
    return session, settings


def _clusters(session: Session) -> dict[int, int | None]:
    rows = session.exec(select(ClusterMember)).all()
    return {m.slip_id: m.cluster_id for m in rows}


def test_store_embedding_twice_keeps_one_row(world) -> None:  # type: ignore[no-untyped-def]
    session, _ = world
    sid = _slip(session, seed=1)
    a, created_a = clustering.store_embedding(
        session=session,
        slip_id=sid,
        model_version=VERSION,
        vector=_vec(0),
        usable=True,
        quality={},
    )
    b, created_b = clustering.store_embedding(
        session=session,
        slip_id=sid,
        model_version=VERSION,
        vector=_vec(1),
        usable=True,
        quality={},
    )
    session.commit()
    assert (created_a, created_b) == (True, False)
    assert a.id == b.id
    assert np.allclose(b.array(), _vec(0))


def test_incremental_assignment_creates_grows_and_keeps_apart(world) -> None:  # type: ignore[no-untyped-def]
    session, settings = world
    a1, a2, a3 = (_slip(session, seed=s) for s in (1, 2, 3))
    b1 = _slip(session, seed=4)
    _embed_and_assign(session, settings, a1, _vec(0))
    assert _clusters(session) == {a1: None}  # alone: nobody to join yet
    _embed_and_assign(session, settings, a2, _vec(0, tilt=0.1))
    c = _clusters(session)
    assert c[a1] == c[a2] is not None
    _embed_and_assign(session, settings, a3, _vec(0, tilt=0.2))
    _embed_and_assign(session, settings, b1, _vec(1))
    c = _clusters(session)
    assert c[a3] == c[a1] and c[b1] is None
    cluster = session.get(WriterCluster, c[a1])
    assert cluster.size == 3
    kinds = [e.kind for e in session.exec(select(ClusterEvent).order_by(ClusterEvent.id)).all()]
    assert kinds == ["created", "grown"]
    # running the stage again is harmless: stopped, nothing duplicated
    job = SlipJob(
        session=session,
        settings=settings,
        config=PipelineConfig(),
        slip_id=a3,
        model_version=VERSION,
        threshold=THRESHOLD,
    )
    again = run_steps(ASSIGN_STEPS, job)
    assert (again.status, again.reason) == ("stopped", "already assigned")
    assert len(session.exec(select(ClusterMember)).all()) == 4
    assert clustering.cluster_of_slip(session=session, slip_id=a1)[0] == c[a1]
    assert clustering.cluster_slip_ids(session=session, cluster_id=c[a1]) == [a1, a2, a3]


def test_recluster_keeps_ids_and_honours_human_decisions(world) -> None:  # type: ignore[no-untyped-def]
    session, settings = world
    a = [_slip(session, seed=s) for s in range(1, 5)]
    b = [_slip(session, seed=s) for s in range(5, 8)]
    for i, sid in enumerate(a):
        _embed_and_assign(session, settings, sid, _vec(0, tilt=0.05 * i))
    for i, sid in enumerate(b):
        _embed_and_assign(session, settings, sid, _vec(1, tilt=0.05 * i))
    before = _clusters(session)
    ca, cb = before[a[0]], before[b[0]]
    assert ca is not None and cb is not None and ca != cb

    stats = recluster(settings=settings, threshold=THRESHOLD, model_version=VERSION)
    session.expire_all()
    assert _clusters(session) == before  # same partition, same ids
    assert stats["slips"] == 7 and stats["created"] == 0

    # a human says b[0] is not the writer of b[1], and that a[0] wrote b[2]
    clustering.record_link_decision(
        session=session, slip_a=b[0], slip_b=b[1], decision="rejected", actor="analyst", note=None
    )
    clustering.record_link_decision(
        session=session, slip_a=a[0], slip_b=b[2], decision="confirmed", actor="analyst", note=None
    )
    session.commit()
    recluster(settings=settings, threshold=THRESHOLD, model_version=VERSION)
    session.expire_all()
    after = _clusters(session)
    assert after[b[0]] is None or after[b[0]] != after[b[1]]  # cannot-link
    assert after[a[0]] == after[b[2]]  # must-link
    assert all(after[s] == ca for s in a[1:]), (before, after)  # the rest kept its id
    # and a third run changes nothing
    recluster(settings=settings, threshold=THRESHOLD, model_version=VERSION)
    session.expire_all()
    assert _clusters(session) == after
    sizes = {c.id: c.size for c in session.exec(select(WriterCluster)).all()}
    for cid in set(after.values()) - {None}:
        assert sizes[cid] == sum(1 for v in after.values() if v == cid)
    assert session.exec(select(ClusterEvent).where(ClusterEvent.kind == "recluster")).all()


def test_anonymous_slip_by_a_known_writer_is_attributed(world) -> None:  # type: ignore[no-untyped-def]
    session, settings = world
    alice = make_customer(session)
    bob = make_customer(session)
    known = [_slip(session, seed=s, customer_id=alice.id) for s in (1, 2)]
    anon = _slip(session, seed=3)
    other = _slip(session, seed=4, customer_id=bob.id)
    for i, sid in enumerate(known):
        _embed_and_assign(session, settings, sid, _vec(2, tilt=0.05 * i))
    _embed_and_assign(session, settings, anon, _vec(2, tilt=0.08))
    _embed_and_assign(session, settings, other, _vec(3))
    cid = clustering.cluster_of_slip(session=session, slip_id=anon)[0]
    assert clustering.cluster_customers(session=session, cluster_id=cid) == {alice.id: 2}
    link = clustering.cluster_link(session=session, cluster_id=cid)
    assert [a["slip_id"] for a in link["attributed"]] == [anon]
    assert link["attributed"][0]["customer_id"] == alice.id
    assert 0.5 <= link["attributed"][0]["confidence"] <= 1.0
    assert link["candidate_link"] is False
    assert clustering.clusters_of_customer(session=session, customer_id=alice.id) == [cid]
    assert clustering.clusters_of_customer(session=session, customer_id=bob.id) == []


def test_two_accounts_in_one_cluster_are_a_candidate_link(world) -> None:  # type: ignore[no-untyped-def]
    session, settings = world
    alice, bob = make_customer(session), make_customer(session)
    s1 = _slip(session, seed=1, customer_id=alice.id)
    s2 = _slip(session, seed=2, customer_id=bob.id)
    _embed_and_assign(session, settings, s1, _vec(4))
    _embed_and_assign(session, settings, s2, _vec(4, tilt=0.1))
    items, total = clustering.list_clusters(session=session, candidate_link=True)
    assert total == 1 and items[0]["customers"] == sorted([alice.id, bob.id])


def test_replacing_a_slip_drops_its_embedding_and_membership(world) -> None:  # type: ignore[no-untyped-def]
    session, settings = world
    s1, s2 = _slip(session, seed=1), _slip(session, seed=2)
    _embed_and_assign(session, settings, s1, _vec(5))
    _embed_and_assign(session, settings, s2, _vec(5, tilt=0.1))
    cid = clustering.cluster_of_slip(session=session, slip_id=s2)[0]
    slip = session.get(clustering.Slip, s2)
    store_slip(
        session=session,
        bet_id=slip.bet_id,
        data=scan_bytes(seed=99),
        actor=SYSTEM,
        max_bytes=10**7,
        max_pixels=10**7,
        replace=True,
    )
    session.commit()
    assert clustering.get_embedding(session=session, slip_id=s2, model_version=VERSION) is None
    assert clustering.cluster_of_slip(session=session, slip_id=s2) is None
    assert session.get(WriterCluster, cid).size == 1


def test_link_decision_validates(world) -> None:  # type: ignore[no-untyped-def]
    from store.errors import Invalid, NotFound

    session, _ = world
    s1 = _slip(session, seed=1)
    with pytest.raises(Invalid, match="decision"):
        clustering.record_link_decision(
            session=session, slip_a=s1, slip_b=s1 + 99, decision="maybe", actor="x", note=None
        )
    with pytest.raises(NotFound, match="slip_b"):
        clustering.record_link_decision(
            session=session, slip_a=s1, slip_b=s1 + 99, decision="confirmed", actor="x", note=None
        )


def test_would_join_answers_without_writing(world) -> None:  # type: ignore[no-untyped-def]
    from workers.pipeline import would_join

    session, settings = world
    s1, s2 = _slip(session, seed=1), _slip(session, seed=2)
    _embed_and_assign(session, settings, s1, _vec(6))
    _embed_and_assign(session, settings, s2, _vec(6, tilt=0.1))
    cid = clustering.cluster_of_slip(session=session, slip_id=s1)[0]
    before = len(session.exec(select(ClusterMember)).all())
    found = would_join(
        session=session, model_version=VERSION, vector=_vec(6, tilt=0.05), threshold=THRESHOLD
    )
    assert found is not None and found[0] == cid and found[1] >= 0.5
    assert (
        would_join(session=session, model_version=VERSION, vector=_vec(1), threshold=THRESHOLD)
        is None
    )
    assert len(session.exec(select(ClusterMember)).all()) == before


def test_two_assigners_never_steal_each_others_slips(world) -> None:  # type: ignore[no-untyped-def]
    """Two processes' in-memory views of one database (regression: an assigner writing a
    row before refreshing skipped the other's rows and re-clustered its slips)."""
    from workers.pipeline import Assigner, assignment_lock

    session, settings = world
    first, second = Assigner(VERSION), Assigner(VERSION)

    def assign(assigner: Assigner, slip_id: int, vector: np.ndarray, *, usable: bool = True):  # type: ignore[no-untyped-def]
        emb, _ = clustering.store_embedding(
            session=session,
            slip_id=slip_id,
            model_version=VERSION,
            vector=vector,
            usable=usable,
            quality={},
        )
        session.commit()
        job = SlipJob(
            session=session,
            settings=settings,
            config=PipelineConfig(),
            slip_id=slip_id,
            model_version=VERSION,
            threshold=THRESHOLD,
            embedding=emb,
        )
        with assignment_lock(session):
            cid = assigner.assign(job)
        session.commit()
        return cid

    s1, s2, s3, s4 = (_slip(session, seed=s) for s in (1, 2, 3, 4))
    second.refresh(session, dim=DIM)  # the second process has looked once, early
    assign(first, s1, _vec(6))
    cid = assign(first, s2, _vec(6, tilt=0.1))
    assert assign(second, s3, _vec(0), usable=False) is None  # writes a row, no cluster
    assert assign(second, s4, _vec(6, tilt=0.05)) == cid
    assert _clusters(session) == {s1: cid, s2: cid, s3: None, s4: cid}
    assert session.get(WriterCluster, cid).size == 3
