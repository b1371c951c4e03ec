"""Rolling a model version out with live traffic, rolling back, and the risk team's
rejected links surviving retraining and re-clustering (embedded pipeline, real models)."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from store import clustering
from store import models_registry as registry
from store.clustering import ClusterMember, Embedding, WriterCluster
from store.models import Slip, SlipStatus
from store.settings import Settings
from tests.conftest import REPO_ROOT
from tests.workers.conftest import model_path
from workers import rollout
from workers.pipeline import InProcessPipeline, recluster

SET_DIR = REPO_ROOT / "sample_slips" / "set"


def _labels() -> list[dict[str, str]]:
    with (SET_DIR / "labels.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def train_small_model(out: Path, *, writers: int = 6, seed: int = 1):  # type: ignore[no-untyped-def]
    """A real second model version: fitted on a few writers of the sample set."""
    from cv.embed import EmbeddingModel
    from cv.preprocess import load_image

    rows = [
        r for r in _labels() if r["writer"] in sorted({r["writer"] for r in _labels()})[:writers]
    ]
    model = EmbeddingModel(families=("hinge", "lbp"), n_components=24, random_state=seed)
    raws = [model.extract(load_image((SET_DIR / r["image"]).read_bytes())) for r in rows]
    model.fit_raw(raws, [r["writer"] for r in rows])
    model.save(out)
    return model


@pytest.fixture(scope="module")
def second_model(tmp_path_factory):  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("models") / "small.npz"
    return train_small_model(path), path


@pytest.fixture(scope="module")
def loose_model(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """The shipped model with looser operating points, so that the first sample writers'
    slips form clusters (at its calibrated pairwise precision 0.98 almost none do)."""
    from dataclasses import replace

    from cv.cluster import calibration_of
    from cv.embed import DEFAULT_MODEL_PATH, EmbeddingModel

    model = EmbeddingModel.load(model_path() or DEFAULT_MODEL_PATH)
    model.calibration_ = replace(calibration_of(model), merge_threshold=0.4, pair_threshold=0.45)
    model.threshold_ = 0.45
    # a version of its own: processes cache models by version, and the shipped model's
    # (strict) operating points must not answer for this one
    model.random_state = 4501
    model.version_ = model._compute_version()
    path = tmp_path_factory.mktemp("models") / "loose.npz"
    model.save(path)
    return path


def _upload(client: TestClient, images: list[str]) -> list[int]:
    ids = []
    for name in images:
        bet = client.post(
            "/bets", json={"amount": 2.0, "betType": "Win", "sport": "Tennis", "description": "x"}
        )
        resp = client.post(
            f"/bets/{bet.json()['id']}/slip",
            files={"slip": (name, (SET_DIR / name).read_bytes())},
        )
        assert resp.status_code == 202, resp.text
        ids.append(resp.json()["id"])
    return ids


def _no_mixed_versions(session: Session) -> None:
    """Every membership points at a cluster of its own model version."""
    rows = session.exec(
        select(ClusterMember.model_version, WriterCluster.model_version).join(
            WriterCluster, col(WriterCluster.id) == col(ClusterMember.cluster_id)
        )
    ).all()
    assert rows and all(a == b for a, b in rows)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_activate_and_roll_back_with_live_traffic(
    db_url, tmp_path, keys, second_model, loose_model, monkeypatch
):  # type: ignore[no-untyped-def]
    from api.main import create_app

    new_model, new_path = second_model
    settings = Settings(
        environment="test", database_url=db_url, data_dir=tmp_path, model_path=loose_model
    )
    images = [r["image"] for r in _labels()][:31]
    pipeline = InProcessPipeline(settings, scheduler=False)
    app = create_app(settings, pipeline=pipeline)
    monkeypatch.setattr(rollout, "DISPATCH_LIMIT", 6)  # several ticks: traffic between them
    with TestClient(app, headers={"X-API-Key": keys.admin}) as client:
        first = _upload(client, images[:18])
        assert pipeline.wait_idle(300)
        with Session(app.state.engine, expire_on_commit=False) as s:
            old = registry.serving_version(session=s)
            registry.register_model(session=s, model=new_model, data=new_path.read_bytes())
            # a pair threshold stored in the registry (the file's own is 0.97)
            registry.calibrate(
                session=s,
                version=new_model.version,
                threshold=0.7,
                target_precision=0.5,
                expected_recall=0.2,
                actor="ml1",
                evaluation="test",
            )
            r, started = registry.start_rollout(session=s, version=new_model.version, actor="ml1")
            s.commit()
        assert started and old and old != new_model.version
        live: list[int] = []
        for k in range(3):
            step = rollout.tick(settings=settings, send=None)
            assert step["state"] == "running" and step["sent"] > 0
            # live traffic: uploads keep being processed, and served by the old version
            live += _upload(client, images[18 + 4 * k : 22 + 4 * k])
            assert pipeline.wait_idle(300)
            for sid in live:
                body = client.get(f"/slips/{sid}").json()
                assert body["status"] == "ready"
                assert body["features"]["model_version"] == old
            listed = client.get("/clusters", params={"limit": 200}).json()["items"]
            assert listed and {c["model_version"] for c in listed} == {old}
            with Session(app.state.engine) as s:
                ro = registry.running_rollout(session=s)
                assert ro is not None
                registry.progress(session=s, rollout=ro)
                assert 0 < ro.done < ro.total
        assert client.get("/models/rollout").json()["rollout"]["state"] == "running"
        result = rollout.run_inline(settings=settings)
        assert result["switched"]
        with Session(app.state.engine) as s:
            assert registry.serving_version(session=s) == new_model.version
            ready = s.exec(select(Slip.id).where(Slip.status == SlipStatus.ready)).all()
            embedded = s.exec(
                select(Embedding.slip_id).where(Embedding.model_version == new_model.version)
            ).all()
            assert set(ready) == set(embedded) == set(first + live)
            members = s.exec(
                select(ClusterMember.slip_id).where(
                    ClusterMember.model_version == new_model.version
                )
            ).all()
            assert set(members) == set(first + live)
            _no_mixed_versions(s)
        # the API serves the new version at once: no restart
        body = client.get(f"/slips/{first[0]}").json()
        assert body["features"]["model_version"] == new_model.version
        listed = client.get("/clusters", params={"limit": 200}).json()["items"]
        assert {c["model_version"] for c in listed} <= {new_model.version}
        # a slip uploaded now goes through the new model
        later = _upload(client, images[30:31])
        assert pipeline.wait_idle(300)
        assert client.get(f"/slips/{later[0]}").json()["features"]["model_version"] == (
            new_model.version
        )

        # roll back: one command; only the slip the old version never saw is embedded
        with Session(app.state.engine, expire_on_commit=False) as s:
            assert registry.previous_version(session=s) == old
            r, _ = registry.start_rollout(session=s, version=old, actor="ml1")
            s.commit()
            assert registry.missing_slips(session=s, version=old) == later
        assert rollout.run_inline(settings=settings)["switched"]
        with Session(app.state.engine) as s:
            assert registry.serving_version(session=s) == old
            history = [a.version for a in registry.activations(session=s)]
            assert history[-3:] == [old, new_model.version, old]
            _no_mixed_versions(s)
        assert client.get(f"/slips/{later[0]}").json()["features"]["model_version"] == old
    pipeline.shutdown()


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
def test_a_rejected_link_never_reappears_after_retraining(  # type: ignore[no-untyped-def]
    db_url, tmp_path, keys, loose_model, monkeypatch
):
    """Two slips of one writer clustered together; the risk team rejects that link and
    confirms another; a model retrained on a labelled folder plus the reviews is rolled out,
    then re-clustered with a threshold so loose that everything else merges: the rejected
    pair stays apart, the confirmed one together."""
    import shutil

    from api.main import create_app
    from cli.offline import train_command
    from store.settings import get_settings

    monkeypatch.setenv("SLIPLINK_DATABASE_URL", db_url)
    monkeypatch.setenv("SLIPLINK_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    settings = Settings(
        environment="test", database_url=db_url, data_dir=tmp_path, model_path=loose_model
    )
    rows = _labels()
    shown = rows[:20]  # 4 writers
    pipeline = InProcessPipeline(settings, scheduler=False)
    app = create_app(settings, pipeline=pipeline)
    with TestClient(app, headers={"X-API-Key": keys.admin}) as client:
        ids = _upload(client, [r["image"] for r in shown])
        writer_of = {sid: r["writer"] for sid, r in zip(ids, shown, strict=True)}
        assert pipeline.wait_idle(300)
        recluster(settings=settings)
        clusters = {sid: client.get(f"/slips/{sid}").json()["cluster_id"] for sid in ids}
        # a and b: one writer, clustered together by the loosened model; c: the same writer
        a, b = next(
            (x, y)
            for x in ids
            for y in ids
            if x < y and writer_of[x] == writer_of[y] and clusters[x] and clusters[x] == clusters[y]
        )
        writer = writer_of[a]
        c = next(z for z in ids if writer_of[z] == writer and z not in (a, b))
        for pair, verdict in (((a, b), "rejected"), ((a, c), "confirmed")):
            resp = client.post(
                "/links", json={"slip_a": pair[0], "slip_b": pair[1], "decision": verdict}
            )
            assert resp.status_code == 201, resp.text

        # retrain: a labelled folder of other writers plus the reviewed slips, registered
        folder = tmp_path / "fit"
        folder.mkdir()
        fit_rows = [r for r in rows if r["writer"] != writer][6:26]
        for r in fit_rows:
            shutil.copy(SET_DIR / r["image"], folder / r["image"])
        labels = folder / "labels.csv"
        labels.write_text(
            "image,writer\n" + "".join(f"{r['image']},{r['writer']}\n" for r in fit_rows)
        )
        out = tmp_path / "retrained.npz"
        params = {"families": ("hinge", "lbp"), "n_components": 16, "random_state": 2}
        train_command(
            [folder], labels_paths=[labels], unipen_fit=[], out=out, split=None, jobs=1,
            params=params, from_reviews=True, register=True, actor="ml1",
        )  # fmt: skip
        from cv.embed import EmbeddingModel

        version = EmbeddingModel.load(out).version
        with Session(app.state.engine, expire_on_commit=False) as s:
            row = registry.get_version(session=s, version=version)
            assert row.fit_data["review_groups"] == 1 and row.fit_data["review_slips"] == 2
            assert row.fit_data["pair_scores"]["n"] == len(fit_rows) + 2
            registry.start_rollout(session=s, version=version, actor="ml1")
            s.commit()
        assert rollout.run_inline(settings=settings)["switched"]
        placed = {sid: client.get(f"/slips/{sid}").json()["cluster_id"] for sid in ids}
        assert placed[a] is None or placed[a] != placed[b]
        for _ in range(2):  # re-clustering at a threshold where everything else merges
            recluster(settings=settings, threshold=0.0)
            placed = {sid: client.get(f"/slips/{sid}").json()["cluster_id"] for sid in ids}
            sizes = Counter(v for v in placed.values() if v)
            assert sum(sizes.values()) >= 15 and len(sizes) <= 4  # loose indeed
            assert placed[a] is None or placed[a] != placed[b]
            assert placed[a] is not None and placed[a] == placed[c]
        with Session(app.state.engine) as s:
            assert clustering.active_model_version(session=s) == version
    pipeline.shutdown()
    get_settings.cache_clear()


def test_rollout_through_celery_workers_with_live_traffic(  # type: ignore[no-untyped-def]
    pg_url, shared_broker_url, worker_env, start_worker, tmp_path, second_model
):
    """The distributed path: POST /models/{v}/activate sends the rollout to real Celery
    workers (beat ticks, re-embedding on the extract queue, the switch on the assign queue)
    while slips keep arriving; then roll back the same way."""
    from sqlalchemy import create_engine

    from tests.workers.conftest import queue_prefix, slip_images, wait_for
    from tests.workers.test_pipeline import Api

    new_model, new_path = second_model
    prefix = queue_prefix()
    start_worker(
        worker_env(database_url=pg_url, broker_url=shared_broker_url, prefix=prefix), concurrency=2
    )
    api = Api(database_url=pg_url, broker_url=shared_broker_url, prefix=prefix, data_dir=tmp_path)
    engine = create_engine(pg_url)
    images = slip_images(24)

    def ready_count() -> int:
        with Session(engine) as s:
            return len(s.exec(select(Slip.id).where(Slip.status == SlipStatus.ready)).all())

    try:
        for data in images[:16]:
            assert api.upload(data)[0] == 202
        wait_for(lambda: ready_count() == 16, timeout=240, what="16 slips ready", every=1.0)
        with Session(engine) as s:
            old = registry.serving_version(session=s)
            registry.register_model(session=s, model=new_model, data=new_path.read_bytes())
            s.commit()
        resp = api.client.post(f"/models/{new_model.version}/activate")
        assert resp.status_code == 202, resp.text
        for data in images[16:]:  # live traffic during the rollout
            assert api.upload(data)[0] == 202

        def active(version: str) -> bool:
            status = api.client.get("/models/rollout").json()
            return status["active"] == version and status["rollout"]["state"] == "complete"

        wait_for(lambda: active(new_model.version), timeout=300, what="the switch", every=1.0)

        def complete_under(version: str) -> bool:
            with Session(engine) as s:
                ready = set(s.exec(select(Slip.id).where(Slip.status == SlipStatus.ready)).all())
                emb = set(
                    s.exec(select(Embedding.slip_id).where(Embedding.model_version == version))
                )
                members = set(
                    s.exec(
                        select(ClusterMember.slip_id).where(ClusterMember.model_version == version)
                    )
                )
                return len(ready) == 24 and ready == emb == members

        # slips that arrived after the last check are re-embedded by the sweeper
        wait_for(lambda: complete_under(new_model.version), timeout=240, what="all under new")
        with Session(engine) as s:
            _no_mixed_versions(s)
        assert api.client.get("/slips/1").json()["features"]["model_version"] == new_model.version

        assert api.client.post("/models/rollback").status_code == 202
        wait_for(lambda: active(old), timeout=300, what="the rollback", every=1.0)
        assert complete_under(old)
    finally:
        api.close()
        engine.dispose()
