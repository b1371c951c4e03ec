"""Rolling out a model version without downtime, and watching the active one for drift.

A rollout (``store.models_registry.start_rollout``) goes

    running    ``tick`` sends the ready slips that have no embedding under the new version
               to ``reembed_slips`` in batches (Celery: the extract queue, so it scales out
               with the extraction workers); resumable: the tick only ever looks at what is
               still missing, and re-sends batches lost with a worker after a lease
    finishing  ``finish`` re-clusters under the new version (human decisions bind it),
               assigns the slips outside the re-clustering window, then switches serving
    complete   the new version serves; the old one's embeddings and clusters stay, so
               rolling back is another (short) rollout

Live traffic keeps being embedded and assigned under the serving version throughout; the
tick picks those slips up for the new version too.  Nothing compares vectors of two versions:
every read is keyed by version.  Slips that arrive between the last check and the switch are
re-embedded by the sweeper (a ready slip without an embedding under the active version).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray
from prometheus_client import Gauge
from sqlmodel import Session, col, select

from store import audit, clustering
from store import models_registry as registry
from store.clustering import ClusterMember, Embedding
from store.db import get_engine
from store.models import Slip, SlipImage, SlipStatus, as_utc, utcnow
from store.models_registry import ModelRollout, RolloutState
from store.settings import Settings
from workers import model as models
from workers.metrics import REGISTRY

log = logging.getLogger("sliplink.rollout")

REEMBED_BATCH = 50  # slips per re-embedding task
DISPATCH_LIMIT = 2000  # slips sent per tick: the next tick sends the next ones
LEASE_S = 600.0  # a batch not done this long after it was sent is taken to be lost

DRIFT_STATISTIC = Gauge(
    "sliplink_model_drift_statistic",
    "KS distance between recent slips' pair scores and the active model's reference",
    ["version"],
    registry=REGISTRY,
)


def _engine(settings: Settings):  # type: ignore[no-untyped-def]
    return get_engine(settings.effective_database_url)


# ---------------------------------------------------------------- re-embedding
def reembed_slips(*, settings: Settings, version: str, slip_ids: list[int]) -> int:
    """Embed these slips under ``version``; slips already embedded, gone or replaced are
    skipped.  Slip status and the serving version's rows are left alone.  Returns the number
    of embeddings written."""
    from cv.imageio import ImageError, decode_greyscale

    with Session(_engine(settings), expire_on_commit=False) as s:
        model = models.model_for(version, session=s, settings=settings)
        done = set(
            s.exec(
                select(Embedding.slip_id).where(
                    Embedding.model_version == version, col(Embedding.slip_id).in_(slip_ids)
                )
            ).all()
        )
        todo = [i for i in slip_ids if i not in done]
        rows = s.exec(
            select(Slip.id, Slip.sha256, SlipImage.png)
            .join(SlipImage, col(SlipImage.slip_id) == col(Slip.id))
            .where(col(Slip.id).in_(todo))
        ).all()
    features: list[tuple[int, str, models.Features]] = []
    for slip_id, sha, png in rows:  # CPU-heavy: outside any transaction
        try:
            image, _ = decode_greyscale(png)
            features.append((int(slip_id), sha, models.extract(model, image)))  # type: ignore[arg-type]
        except ImageError as exc:
            log.warning("slip %s: unreadable stored image (%s); stored as unusable", slip_id, exc)
            empty = models.Features(
                np.zeros(model.dim, np.float32), False, {"flags": ["unreadable"]}
            )
            features.append((int(slip_id), sha, empty))  # type: ignore[arg-type]
    written = 0
    with Session(_engine(settings), expire_on_commit=False) as s:
        current = dict(
            s.exec(
                select(Slip.id, Slip.sha256).where(col(Slip.id).in_([f[0] for f in features]))
            ).all()
        )
        for slip_id, sha, f in features:
            if current.get(slip_id) != sha:
                continue  # replaced meanwhile: its new upload is embedded afresh
            _, created = clustering.store_embedding(
                session=s,
                slip_id=slip_id,
                model_version=version,
                vector=f.vector,
                usable=f.usable,
                quality=f.quality,
            )
            written += int(created)
        s.commit()
    return written


# ---------------------------------------------------------------- the rollout
SendBatch = Callable[[int, str, list[int]], None]


def tick(*, settings: Settings, send: SendBatch | None, now: datetime | None = None) -> dict:
    """Advance the running rollout one step.

    Sends the next slips missing under the new version (``send(rollout_id, version, ids)``
    per batch; with ``send=None`` embeds them here) and moves the rollout to ``finishing``
    once none is missing.  Returns ``{"rollout", "state", "sent", "finish"}`` or ``{}`` when
    no rollout runs; ``finish`` True means the caller should run :func:`finish`.
    """
    now = now or utcnow()
    with Session(_engine(settings), expire_on_commit=False) as s:
        r = registry.running_rollout(session=s)
        if r is None:
            return {}
        rid, version = int(r.id), r.version  # type: ignore[arg-type]
        if r.state == RolloutState.finishing:
            # finish runs (or its message was lost): send it again once its lease is over
            lost = as_utc(r.updated_at) + timedelta(seconds=LEASE_S) < now
            return {"rollout": rid, "state": "finishing", "sent": 0, "finish": lost}
        registry.progress(session=s, rollout=r)
        ids = registry.missing_slips(
            session=s, version=version, after=r.cursor, limit=DISPATCH_LIMIT
        )
        if not ids:
            if not registry.missing_slips(session=s, version=version, limit=1):
                r.state = RolloutState.finishing
                s.add(r)
                s.commit()
                return {"rollout": rid, "state": "finishing", "sent": 0, "finish": True}
            sent_at = as_utc(r.dispatched_at) if r.dispatched_at else None
            if sent_at is not None and sent_at + timedelta(seconds=LEASE_S) > now:
                s.commit()
                return {"rollout": rid, "state": "running", "sent": 0, "finish": False}
            # what was sent before the lease ran out and is still missing: send again
            ids = registry.missing_slips(session=s, version=version, limit=DISPATCH_LIMIT)
        r.cursor, r.dispatched_at = max(ids), now
        s.add(r)
        s.commit()
    batches = [ids[i : i + REEMBED_BATCH] for i in range(0, len(ids), REEMBED_BATCH)]
    for batch in batches:
        if send is None:
            reembed_slips(settings=settings, version=version, slip_ids=batch)
        else:
            send(rid, version, batch)
    return {"rollout": rid, "state": "running", "sent": len(ids), "finish": False}


def finish(*, settings: Settings, rollout_id: int) -> dict[str, Any]:
    """Re-cluster under the new version, assign the slips outside the window, switch.

    Returns counts and, under ``triggers``, the rule triggers of the slips whose cluster
    changed (to send once the switch has committed).  A no-op unless the rollout is
    ``finishing``; back to ``running`` when slips went missing meanwhile."""
    from workers import pipeline

    with Session(_engine(settings), expire_on_commit=False) as s:
        r = s.get(ModelRollout, rollout_id)
        if r is None or r.state != RolloutState.finishing:
            return {"switched": False, "triggers": []}
        version = r.version
        r.updated_at = utcnow()  # the lease of this finish
        s.add(r)
        s.commit()
    try:
        stats = pipeline.recluster(settings=settings, model_version=version)
        assigned = _assign_rest(settings=settings, version=version)
    except pipeline.TRANSIENT:
        raise
    except Exception as exc:
        with Session(_engine(settings)) as s:
            r = s.get(ModelRollout, rollout_id)
            if r is not None:
                r.state, r.error = RolloutState.failed, f"{type(exc).__name__}: {exc}"[:1000]
                r.finished_at = utcnow()
                s.add(r)
                s.commit()
        raise
    triggers = stats.pop("triggers", [])
    with Session(_engine(settings), expire_on_commit=False) as s:
        # locked: a duplicate finish message waits here and then finds the rollout complete
        r = s.exec(
            select(ModelRollout).where(ModelRollout.id == rollout_id).with_for_update()
        ).first()
        if r is None or r.state != RolloutState.finishing:
            return {"switched": False, "triggers": []}  # cancelled or finished meanwhile
        registry.progress(session=s, rollout=r)
        if registry.missing_slips(session=s, version=version, limit=1):
            r.state = RolloutState.running
            s.add(r)
            s.commit()
            return {"switched": False, "triggers": []}
        r.detail = {**(r.detail or {}), "recluster": stats, "assigned": assigned}
        registry.complete_rollout(session=s, rollout=r)
        s.commit()
    log.info("model %s serves now (%s)", version, stats)
    return stats | {"switched": True, "assigned": assigned, "triggers": triggers}


def _assign_rest(*, settings: Settings, version: str) -> int:
    """Incremental assignment of the embedded slips the re-clustering did not cover."""
    from workers import pipeline

    n = 0
    while True:
        with Session(_engine(settings)) as s:
            assigned = select(ClusterMember.slip_id).where(ClusterMember.model_version == version)
            ids = [
                int(i)  # type: ignore[arg-type]
                for i in s.exec(
                    select(Embedding.slip_id)
                    .where(
                        Embedding.model_version == version,
                        col(Embedding.slip_id).not_in(assigned),
                    )
                    .order_by(col(Embedding.slip_id))
                    .limit(500)
                ).all()
            ]
        if not ids:
            return n
        for sid in ids:
            pipeline.assign_stage(sid, version, settings)
        n += len(ids)


IDLE_WAIT_S = 1.0  # run_inline's pause while another runner holds the last batches
_inline_runs = 0  # run_inline calls running in this process
_inline_count = threading.Lock()


def inline_running() -> bool:
    """Whether this process runs a rollout inline now (an activation's thread, the CLI)."""
    with _inline_count:
        return _inline_runs > 0


def run_inline(
    *,
    settings: Settings,
    progress: Callable[[dict[str, Any]], None] | None = None,
    triggers: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the running rollout to its end in this process (embedded mode, ``--wait``).

    Another runner (another process, the embedded scheduler's rollout tick) may be at it
    too: each tick takes the next slips after the rollout's cursor, so the two share the
    work; while the other one embeds the last batches this one waits instead of spinning."""
    global _inline_runs
    with _inline_count:
        _inline_runs += 1
    try:
        while True:
            step = tick(settings=settings, send=None)
            if progress is not None and step:
                with Session(_engine(settings)) as s:
                    r = registry.running_rollout(session=s)
                    if r is not None:
                        progress(registry.rollout_public(registry.progress(session=s, rollout=r)))
            if not step:
                return {"switched": False}
            if step["finish"]:
                result = finish(settings=settings, rollout_id=step["rollout"])
                for t in result.get("triggers", []):
                    if triggers is not None:
                        triggers(t)
                if result.get("switched"):
                    return result
            elif not step["sent"]:
                time.sleep(IDLE_WAIT_S)
    finally:
        with _inline_count:
            _inline_runs -= 1


# ---------------------------------------------------------------- drift watch
QUANTILES = np.linspace(0.0, 1.0, 101)
MAX_SAMPLE = 2000  # slips compared per check: the pair distribution needs no more
DRIFT_MIN_SLIPS = 30


def pair_score_sample(x: NDArray[np.float32], *, seed: int = 0, pairs: int = 200_000) -> NDArray:
    """Cosine scores of random distinct pairs of rows of ``x`` (n, d), L2-normalised rows."""
    rng = np.random.default_rng(seed)
    n = len(x)
    if n < 2:
        return np.zeros(0)
    if n * (n - 1) // 2 <= pairs:
        i, j = np.triu_indices(n, k=1)
    else:
        i, j = rng.integers(0, n, pairs), rng.integers(0, n, pairs)
        keep = i != j
        i, j = i[keep], j[keep]
    return np.einsum("ij,ij->i", x[i], x[j]).astype(np.float64)


def score_reference(x: NDArray[np.float32], *, source: str) -> dict[str, Any]:
    """What the drift watch compares with: quantiles of the pair-score distribution of the
    embeddings ``x`` (n, d) (the fitting data's) and the fraction with no usable writing."""
    scores = pair_score_sample(np.asarray(x, np.float32))
    return {
        "source": source,
        "n": int(len(x)),
        "quantiles": [float(v) for v in np.quantile(scores, QUANTILES)] if len(scores) else [],
        "mean": float(scores.mean()) if len(scores) else 0.0,
    }


def ks_to_reference(scores: NDArray, reference: dict[str, Any]) -> float:
    """Kolmogorov-Smirnov distance between the empirical CDF of ``scores`` and the
    reference CDF (piecewise linear through its stored quantiles)."""
    q = np.asarray(reference["quantiles"], dtype=np.float64)
    s = np.sort(np.asarray(scores, dtype=np.float64))
    if len(s) == 0 or len(q) < 2:
        return 0.0
    ref_cdf = np.interp(s, q, QUANTILES[: len(q)], left=0.0, right=1.0)
    n = len(s)
    above = np.arange(1, n + 1) / n - ref_cdf
    below = ref_cdf - np.arange(0, n) / n
    return float(max(above.max(), below.max()))


def check_drift(
    *,
    settings: Settings,
    days: int = 7,
    limit: float = 0.2,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Compare the pair-score distribution of the slips of the last ``days`` under the active
    model with the model's reference; a KS distance over ``limit`` raises an operations
    alert (``system.model_drift``) and sets the ``sliplink_model_drift_statistic`` gauge.

    The reference is the labelled data of the version's latest folder evaluation (``sliplink
    models evaluate VERSION DIR``), not the fitting data itself: the fitting writers' pairs
    separate more than any new writers' (KS 0.40 measured against held-out writers of the
    same generator, 0.08 between two held-out halves, 0.27 for blurred darker scans, 0.89
    for sideways scans against a held-out half: ``bench/drift.py``).  A version
    with no reference takes its first check's slips as the reference.  Returns the figures.
    """
    now = now or utcnow()
    with Session(_engine(settings), expire_on_commit=False) as s:
        version = clustering.active_model_version(session=s)
        if not version:
            return {"checked": False, "reason": "no active model"}
        rows = s.exec(
            select(Embedding.vector, Embedding.usable)
            .join(Slip, col(Slip.id) == col(Embedding.slip_id))
            .where(
                Embedding.model_version == version,
                col(Slip.uploaded_at) >= now - timedelta(days=days),
                Slip.status == SlipStatus.ready,
            )
            .order_by(col(Embedding.id).desc())
            .limit(MAX_SAMPLE)
        ).all()
        usable = [np.frombuffer(v, dtype="<f4") for v, ok in rows if ok]
        unusable_rate = 1.0 - len(usable) / len(rows) if rows else 0.0
        figures: dict[str, Any] = {
            "checked": True,
            "version": version,
            "slips": len(rows),
            "unusable_rate": round(unusable_rate, 4),
            "days": days,
        }
        if len(usable) < DRIFT_MIN_SLIPS:
            return figures | {"checked": False, "reason": f"fewer than {DRIFT_MIN_SLIPS} slips"}
        x = np.stack(usable).astype(np.float32)
        row = s.exec(
            select(registry.ModelVersion).where(registry.ModelVersion.version == version)
        ).first()
        reference = row.reference if row is not None else None
        if not reference or not reference.get("quantiles"):
            if row is not None:
                registry.set_reference(
                    session=s,
                    version=version,
                    reference=score_reference(x, source=f"first slips to {now.date()}"),
                )
                s.commit()
            return figures | {"checked": False, "reason": "reference set from these slips"}
        scores = pair_score_sample(x)
        ks = ks_to_reference(scores, reference)
        drifted = ks > limit
        figures |= {
            "ks": round(ks, 4),
            "limit": limit,
            "drifted": drifted,
            "mean_score": round(float(scores.mean()), 4),
            "reference_mean": reference.get("mean"),
            "reference_source": reference.get("source"),
        }
        registry.record_drift(
            session=s,
            version=version,
            n=len(usable),
            statistic=ks,
            drifted=drifted,
            detail=figures,
        )
        DRIFT_STATISTIC.labels(version=version).set(ks)
        if drifted:
            problem = (
                f"model {version}: slip score distribution moved from the fitting data "
                f"(KS {ks:.3f} > {limit}) over {len(usable)} slips of the last {days} days"
            )
            _raise_alert(s, problem, figures=figures, now=now)
        s.commit()
    return figures


def _raise_alert(s: Session, problem: str, *, figures: dict[str, Any], now: datetime) -> None:
    log.warning("drift watch: %s", problem)
    numbers = {k: float(v) for k, v in figures.items() if isinstance(v, int | float)}
    try:
        from rules.engine import raise_system_alert
    except ImportError:
        raise_system_alert = None  # type: ignore[assignment]
    if raise_system_alert is not None:
        raise_system_alert(session=s, kind="model_drift", reason=problem, figures=numbers, now=now)
    audit.record(
        s,
        actor="system",
        action="model.drift",
        entity="model",
        entity_id=str(figures.get("version", "")),
        after={"problem": problem, **numbers},
    )
