"""The slip pipeline, top to bottom.

One slip goes through two stages, each an ordered list of named steps with one signature
``step(job) -> None``.  A step either returns (go on), raises :class:`Stopped` (an expected
end: duplicate, unreadable, already done; the slip's state says why) or raises anything else
(a failure: transient errors are retried by the caller, others mark the slip failed with the
reason).  The runner commits after every step, so the CPU-heavy embedding runs outside any
transaction and a step's writes are durable before the next one starts.

    EXTRACT_STEPS   claim -> load_image -> load_model -> embed -> store_features
    ASSIGN_STEPS    load_embedding -> assign_cluster

Extraction scales out (any number of processes and machines).  Assignment is serialised:
one ``assign`` queue consumed by one worker process with concurrency 1 *and* a PostgreSQL
advisory lock (plus a thread lock in process), so two assigners never race on clusters.
After assignment, rules run for what changed (``rules.engine.run_event_rules``).

Everything is keyed by (slip id, model version) with unique constraints, so running any
stage twice is harmless: no duplicate embedding, membership or alert.  Processing state
lives in ``slips.status/attempts/error`` (and ``bets.rules_pending_since`` for the rules of a
new bet); the :func:`sweep` finds slips and bets whose task was lost.

:func:`pipeline_for` returns the Celery client when a broker is configured, otherwise the
in-process pipeline (a thread pool running these same functions).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import and_, bindparam, case, func, or_, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, delete, select, update

from store import audit, clustering
from store.clustering import (
    ClusterEvent,
    ClusterMember,
    ClusterStatus,
    Embedding,
    EventKind,
    WriterCluster,
)
from store.db import get_engine
from store.models import AuditEntry, Bet, Slip, SlipImage, SlipStatus, as_utc, utcnow
from store.settings import Settings
from workers import model as models
from workers.config import PipelineConfig
from workers.metrics import DROPPED, observe
from workers.schedule import EmbeddedScheduler

if TYPE_CHECKING:
    from cv.cluster import Calibration

log = logging.getLogger("sliplink.pipeline")


# ---------------------------------------------------------------- outcomes and errors
class Stopped(Exception):  # noqa: N818 - an outcome, not an error
    """An expected end of a stage (duplicate, unreadable, already done), not a failure."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StageFailure(Exception):  # noqa: N818 - carries a child's error to the parent
    """A stage failed in a child process with a non-transient error (its type and text)."""


class StageTransient(Exception):  # noqa: N818
    """A stage met a transient error in a child process, or the child died: retry."""


def _transient_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [
        StageTransient,
        sa_exc.OperationalError,
        sa_exc.InterfaceError,
        sa_exc.DisconnectionError,
        ConnectionError,
        TimeoutError,
    ]
    try:
        import redis.exceptions

        errors += [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError]
    except ImportError:  # pragma: no cover - redis is a dependency of the Celery setup
        pass
    try:
        import kombu.exceptions

        errors.append(kombu.exceptions.OperationalError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


#: Errors worth retrying with backoff: the database or the broker went away for a while.
TRANSIENT: tuple[type[BaseException], ...] = _transient_errors()


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT)


def single_threaded_math() -> None:
    """One BLAS / OpenMP thread in this process.  Each worker process (or in-process thread)
    extracts one slip at a time, and the processes already fill the cores: OpenBLAS threads
    of its own in each only spin against the others (measured on 2 cores: 126 -> 72 ms of
    CPU per slip, embedding and the rest alike)."""
    import cv2
    from threadpoolctl import threadpool_limits

    from cv.embed import keep_freed_memory

    threadpool_limits(1)
    # OpenCV's own pool is not covered by threadpoolctl; its helper threads cost CPU time
    # the processes already spend on the other core
    cv2.setNumThreads(1)
    # each slip's arrays reuse the last one's pages instead of faulting in new ones
    keep_freed_memory()


def backoff(retries: int, *, base: float = 1.0, cap: float = 60.0) -> float:
    """Exponential backoff with full jitter (AWS architecture blog, 2015): 0..min(cap, 2^n)."""
    return random.uniform(0, min(cap, base * 2**retries))  # noqa: S311 - not cryptographic


@dataclass(frozen=True)
class Outcome:
    """``done`` or ``stopped`` (with the step and the reason) for one stage of one slip."""

    status: str
    step: str = ""
    reason: str = ""
    triggers: tuple[dict[str, Any], ...] = ()
    model_version: str = ""  # resolved by the stage: the next one need not look it up again

    @property
    def extracted(self) -> bool:
        """The slip has its embedding: assignment may follow."""
        return self.status == "done" or self.reason == "already extracted"


@dataclass
class SlipJob:
    """What the steps of one stage share."""

    session: Session
    settings: Settings
    config: PipelineConfig
    slip_id: int
    model_version: str = ""
    sha256: str = ""
    image: NDArray[np.uint8] | None = None
    model: Any = None
    features: models.Features | None = None
    embedding: Embedding | None = None
    png: bytes | None = None  # the stored image, read by claim
    threshold: float | None = None  # None: the model's calibrated threshold
    heartbeat: LeaseHeartbeat | None = None
    triggers: list[dict[str, Any]] = field(default_factory=list)
    grown: bool = False  # the slip joined a cluster that existed (nothing else moved)


Step = Callable[[SlipJob], None]


# ---------------------------------------------------------------- extract steps
def claim(job: SlipJob) -> None:
    """Lock the slip, stop when there is nothing to do, count the attempt, read the stored
    image (in the same transaction: one commit less per slip), start the lease.

    ``attempts`` counts consecutive claims of this piece of work that did not finish (the
    worker was lost with its lease, or hit a transient error); finishing resets it, so a
    slip re-embedded under many model versions is never failed for having succeeded."""
    s = job.session
    if not job.model_version:
        job.model_version = _active_version(job)
    slip = s.exec(select(Slip).where(Slip.id == job.slip_id).with_for_update()).first()
    if slip is None:
        raise Stopped("slip gone")
    # a statement of its own after the lock: its snapshot sees an embedding committed by a
    # worker that held the lock meanwhile (a column of the locking SELECT would not)
    params = {"slip_id": job.slip_id, "version": job.model_version}
    if s.exec(_HAS_EMBEDDING, params=params).first() is not None:
        if slip.status != SlipStatus.ready or slip.attempts:
            slip.status, slip.error, slip.updated_at = SlipStatus.ready, None, utcnow()
            slip.attempts = 0
            s.add(slip)
        raise Stopped("already extracted")
    if slip.status == SlipStatus.failed:
        raise Stopped(f"failed earlier: {slip.error}")
    lease_ends = as_utc(slip.updated_at) + timedelta(seconds=job.config.lease_s)
    if slip.status == SlipStatus.processing and lease_ends > utcnow():
        # a duplicate message while another worker holds the lease; if that worker died,
        # the sweeper re-sends the slip when the lease runs out
        raise Stopped("in progress elsewhere")
    slip.attempts += 1
    if slip.attempts > job.config.max_attempts:
        slip.status, slip.updated_at = SlipStatus.failed, utcnow()
        slip.error = f"gave up after {job.config.max_attempts} attempts (worker lost each time)"
        s.add(slip)
        raise Stopped("gave up")
    job.sha256 = slip.sha256
    slip.status, slip.updated_at = SlipStatus.processing, utcnow()
    s.add(slip)
    job.png = _stored_image(s, job.slip_id)
    job.heartbeat = LeaseHeartbeat(s.get_bind(), job.slip_id, every=job.config.heartbeat_s)


_HAS_EMBEDDING = select(Embedding.id).where(
    col(Embedding.slip_id) == bindparam("slip_id"),
    col(Embedding.model_version) == bindparam("version"),
)
_STORED_IMAGE = select(SlipImage.png).where(col(SlipImage.slip_id) == bindparam("slip_id"))


def _stored_image(session: Session, slip_id: int) -> bytes | None:
    """The slip's stored PNG.  PostgreSQL sends it in binary on a cursor of the session's
    own connection (its transaction): in the text format a bytea travels hex-encoded,
    measured 1.0 -> 0.3 ms of worker and 1.1 -> 0.25 ms of server CPU per 400 KB slip."""
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        return session.exec(_STORED_IMAGE, params={"slip_id": slip_id}).first()
    dbapi: Any = connection.connection.dbapi_connection  # a psycopg (3) connection
    with dbapi.cursor(binary=True) as cursor:
        cursor.execute("SELECT png FROM slip_images WHERE slip_id = %s", (slip_id,))
        row = cursor.fetchone()
    return None if row is None else bytes(row[0])


def _active_version(job: SlipJob) -> str:
    try:
        return models.ensure_active_model(session=job.session, settings=job.settings)
    except sa_exc.IntegrityError:
        # another process activated (registered) the configured model at the same moment
        job.session.rollback()
        return models.ensure_active_model(session=job.session, settings=job.settings)


class LeaseHeartbeat:
    """Keeps a claimed slip's lease alive while its worker lives: every ``every`` seconds a
    thread of its own moves ``updated_at`` on.  A killed worker stops beating, so the
    sweeper sees the lease (``lease_s``, several beats) run out soon after, instead of
    waiting out a lease long enough for the slowest extraction."""

    def __init__(self, bind: Any, slip_id: int, *, every: float) -> None:
        self.bind, self.slip_id, self.every = bind, slip_id, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sliplink-lease", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        engine = self.bind if isinstance(self.bind, Engine) else self.bind.engine
        while not self._stop.wait(self.every):
            try:
                with engine.begin() as conn:
                    conn.execute(
                        update(Slip)  # type: ignore[arg-type]
                        .where(
                            col(Slip.id) == self.slip_id, col(Slip.status) == SlipStatus.processing
                        )
                        .values(updated_at=utcnow())
                    )
            except Exception as exc:  # noqa: BLE001 - a missed beat only shortens the lease
                log.warning("slip %s: lease heartbeat failed: %s", self.slip_id, exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def load_image(job: SlipJob) -> None:
    """The stored greyscale PNG (read by ``claim``) as a (rows, cols) uint8 array."""
    from cv.imageio import ImageError, decode_greyscale

    png, job.png = job.png, None
    if png is None:
        _fail(job, "unreadable: no stored image")
    job.image = _stored_png(png)  # type: ignore[arg-type]
    if job.image is None:
        try:
            job.image, _ = decode_greyscale(png)  # type: ignore[arg-type]
        except ImageError as exc:
            _fail(job, f"unreadable: {exc}")


def _stored_png(data: bytes) -> NDArray[np.uint8] | None:
    """A stored slip (a plain 8-bit greyscale PNG, ``store.slips``) decoded: as the upload
    wrote it (:func:`_up_filtered_png`), else by OpenCV (same pixels, 4.5 ms per 1.2 MP
    slip against 5.4 ms through Pillow).  None for anything else (another kind of image,
    unreadable data): ``decode_greyscale`` then decides."""
    import cv2

    if not data.startswith(_PNG_SIGNATURE):
        return None
    own = _up_filtered_png(data)
    if own is not None:
        return own
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.ndim != 2 or image.dtype != np.uint8:
        return None
    return np.asarray(image, dtype=np.uint8)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# chunks that leave the greyscale pixels as they are (``store.slips``); any other: OpenCV
_PLAIN_CHUNKS = frozenset({b"IHDR", b"IDAT", b"IEND", b"pHYs", b"gAMA", b"cHRM", b"sRGB",
                           b"sBIT", b"tIME"})  # fmt: skip


def _up_filtered_png(data: bytes) -> NDArray[np.uint8] | None:
    """The pixels of a non-interlaced 8-bit greyscale PNG whose rows all carry the "Up"
    filter (or none), as uploads store scans (``store.slips``, ``cv.imageio.encode_png``):
    inflated by ISA-L and un-filtered row by row (each row plus the one above, modulo 256),
    2.7-3.6 ms per ~1 MP sample slip against 4.5-5.2 ms for OpenCV (zlib's inflate alone
    takes 3.8).  Chunk CRCs and the zlib checksum are checked; None for any other PNG."""
    import struct
    import zlib

    try:
        from isal import isal_zlib
    except ImportError:  # pragma: no cover - isal is a dependency; a platform without it
        return None
    if data[12:16] != b"IHDR" or len(data) < 33:
        return None
    cols, rows, depth, colour, method, filtering, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if (depth, colour, method, filtering, interlace) != (8, 0, 0, 0, 0) or not rows * cols:
        return None
    compressed, pos = [], 8
    while True:
        if pos + 12 > len(data):
            return None  # no IEND
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        end = pos + 12 + length
        body = data[pos + 8 : end - 4]
        if kind not in _PLAIN_CHUNKS or end > len(data):
            return None
        if zlib.crc32(body, zlib.crc32(kind)) != struct.unpack(">I", data[end - 4 : end])[0]:
            return None
        if kind == b"IEND":
            break
        if kind == b"IDAT":
            compressed.append(body)
        pos = end
    try:
        raw = isal_zlib.decompress(b"".join(compressed))
    except Exception:  # noqa: BLE001 - isal's IsalError (typed as no exception): corrupt data
        return None
    if len(raw) != rows * (cols + 1):
        return None
    filtered = np.frombuffer(raw, dtype=np.uint8).reshape(rows, cols + 1)
    kinds = filtered[:, 0].tolist()
    if not set(kinds) <= {0, 2}:  # libpng writes a single row unfiltered (0)
        return None
    image = filtered[:, 1:].copy()
    # a loop over rows: numpy's cumulative sum down the columns took 3.9 ms, this 1.5
    for row in range(1, rows):
        if kinds[row] == 2:
            np.add(image[row], image[row - 1], out=image[row])
    return image


def load_model(job: SlipJob) -> None:
    job.model = models.model_for(job.model_version, session=job.session, settings=job.settings)


def embed(job: SlipJob) -> None:
    """Preprocess and embed with the active model (``cv.embed``); no transaction is open."""
    assert job.image is not None
    job.features = models.extract(job.model, job.image)


def store_features(job: SlipJob) -> None:
    """Mark the slip ready unless its image changed (the update locks its row, as the
    claim's SELECT ... FOR UPDATE did), then store the embedding (insert-or-ignore): three
    statements with the commit, where the ORM's lock, savepoint, insert and update were six."""
    s = job.session
    ready = s.exec(  # type: ignore[call-overload]
        _MARK_READY, params={"slip_id": job.slip_id, "sha": job.sha256, "now": utcnow()}
    ).first()
    if ready is None:
        if s.exec(select(Slip.id).where(Slip.id == job.slip_id)).first() is None:
            raise Stopped("slip gone")
        raise Stopped("slip image replaced while processing")  # the new upload has its task
    assert job.features is not None
    f = job.features
    clustering.insert_embedding(
        session=s,
        slip_id=job.slip_id,
        model_version=job.model_version,
        vector=f.vector,
        usable=f.usable,
        quality=f.quality,
    )


# the work is done: attempts reset, so the next piece of work counts from zero
_MARK_READY = (
    update(Slip)
    .where(col(Slip.id) == bindparam("slip_id"), col(Slip.sha256) == bindparam("sha"))
    .values(status=SlipStatus.ready, error=None, attempts=0, updated_at=bindparam("now"))
    .returning(col(Slip.id))
)


EXTRACT_STEPS: tuple[tuple[str, Step], ...] = (
    ("claim", claim),
    ("load_image", load_image),
    ("load_model", load_model),
    ("embed", embed),
    ("store_features", store_features),
)


# ---------------------------------------------------------------- assign steps
def load_embedding(job: SlipJob) -> None:
    s = job.session
    if not job.model_version:
        job.model_version = _active_version(job)
    job.embedding = clustering.get_embedding(
        session=s, slip_id=job.slip_id, model_version=job.model_version
    )
    if job.embedding is None:
        raise Stopped("not extracted")
    # an assigned slip is recognised under the assignment lock (assign_cluster)


def assign_cluster(job: SlipJob) -> None:
    """Join the nearest cluster, start one with unclustered neighbours, or stay alone
    (``cv.cluster.assign_incremental``), under the assignment lock."""
    assert job.embedding is not None
    # a build in progress (started at process start) is waited for outside the lock
    await_index(job.session, job.model_version, dim=job.embedding.dim)
    with assignment_lock(job.session):
        # the lock is ours: whatever another assigner committed is now visible
        if clustering.get_membership(
            session=job.session, slip_id=job.slip_id, model_version=job.model_version
        ):
            raise Stopped("already assigned")
        assigner = _assigner(job.session, job.model_version)
        try:
            cluster_id = assigner.assign(job)
        except BaseException:
            assigner.invalidate()  # the transaction may roll back: rebuild from the DB
            raise
    if cluster_id is not None:
        job.triggers.append(_slip_trigger(job.session, job.slip_id, cluster_id, grown=job.grown))


ASSIGN_STEPS: tuple[tuple[str, Step], ...] = (
    ("load_embedding", load_embedding),
    ("assign_cluster", assign_cluster),
)


def _slip_trigger(
    session: Session, slip_id: int, cluster_id: int, *, grown: bool = False
) -> dict[str, Any]:
    """The ``slip_clustered`` rules trigger; ``grown``: only this slip joined an existing
    cluster, so the rules its join cannot change are left out (`rules.engine.join_changes`)."""
    bet = session.exec(
        select(Bet).join(Slip, col(Slip.bet_id) == col(Bet.id)).where(Slip.id == slip_id)
    ).first()
    return {
        "kind": "slip_clustered",
        "at": utcnow().isoformat(),
        "slip_id": slip_id,
        "cluster_id": cluster_id,
        "bet_id": bet.id if bet else None,
        "customer_id": bet.customer_id if bet else None,
        "grown": grown,
    }


def _fail(job: SlipJob, reason: str) -> None:
    fail_slip(session=job.session, slip_id=job.slip_id, reason=reason)
    raise Stopped(reason)


def fail_slip(*, session: Session, slip_id: int, reason: str) -> None:
    slip = session.get(Slip, slip_id)
    if slip is not None:
        slip.status, slip.error, slip.updated_at = SlipStatus.failed, reason[:1000], utcnow()
        session.add(slip)


# ---------------------------------------------------------------- the runner
def run_steps(steps: Iterable[tuple[str, Step]], job: SlipJob) -> Outcome:
    """Run steps in order, committing after each; Stopped ends the stage early."""
    for name, step in steps:
        started = time.perf_counter()
        try:
            step(job)
        except Stopped as stop:
            job.session.commit()
            return Outcome("stopped", name, stop.reason, tuple(job.triggers), job.model_version)
        finally:
            observe(name, time.perf_counter() - started)
        job.session.commit()
    return Outcome("done", triggers=tuple(job.triggers), model_version=job.model_version)


def _run_stage(
    steps: Iterable[tuple[str, Step]], slip_id: int, model_version: str | None, settings: Settings
) -> Outcome:
    engine = get_engine(settings.effective_database_url)
    with Session(engine, expire_on_commit=False) as session:
        job = SlipJob(
            session=session,
            settings=settings,
            config=PipelineConfig.from_env(),
            slip_id=slip_id,
            model_version=model_version or "",
        )
        try:
            outcome = run_steps(steps, job)
        except BaseException:
            session.rollback()
            raise
        finally:
            if job.heartbeat is not None:
                job.heartbeat.stop()
    stage = "assign" if steps is ASSIGN_STEPS else "extract"
    log.info("slip %s %s %s: %s %s", slip_id, stage, outcome.status, outcome.step, outcome.reason)
    return outcome


def extract_stage(slip_id: int, model_version: str | None, settings: Settings) -> Outcome:
    return _run_stage(EXTRACT_STEPS, slip_id, model_version, settings)


def assign_stage(slip_id: int, model_version: str | None, settings: Settings) -> Outcome:
    return _run_stage(ASSIGN_STEPS, slip_id, model_version, settings)


def mark_failed(slip_id: int, reason: str, settings: Settings) -> None:
    """A non-transient error: the slip is failed with its reason (a task wrapper calls it)."""
    engine = get_engine(settings.effective_database_url)
    with Session(engine) as session:
        fail_slip(session=session, slip_id=slip_id, reason=reason)
        session.commit()
    log.warning("slip %s failed: %s", slip_id, reason)


def rules_stage(trigger: dict[str, Any], settings: Settings) -> int:
    """Event-driven rules for what changed; returns the number of alerts raised.  Skipped
    (0) when the rules engine is not installed.

    The rules of ``bet_placed`` run once per bet: the bet is marked evaluated
    (``bets.rules_pending_since`` cleared) first, in the transaction that stores its alerts,
    and a bet no longer waiting (a message sent twice: publish and sweeper, a redelivery) is
    skipped.  The update locks the bet's row, so a second run of the same bet waits for the
    first to commit and then finds it done."""
    try:
        from rules.engine import run_event_rules
        from rules.types import Trigger
    except ImportError:
        return 0
    engine = get_engine(settings.effective_database_url)
    started = time.perf_counter()
    with Session(engine, expire_on_commit=False) as session:
        bet_id = trigger.get("bet_id") if trigger.get("kind") == "bet_placed" else None
        if bet_id is not None:
            claimed = session.connection().execute(_BET_RULES_DONE, {"bet": int(bet_id)}).first()
            if claimed is None:
                log.info("bet %s: bet_placed rules already ran", bet_id)
                return 0
        alerts = run_event_rules(session=session, trigger=Trigger.from_json(trigger))
        session.commit()
    observe("rules", time.perf_counter() - started)
    return len(alerts or [])


_BETS = Bet.__table__  # type: ignore[attr-defined]
# the bet_placed rules of a bet: taken (and the row locked) only while the bet waits for them
_BET_RULES_DONE = (
    update(_BETS)
    .where(_BETS.c.id == bindparam("bet"), _BETS.c.rules_pending_since.is_not(None))
    .values(rules_pending_since=None)
    .returning(_BETS.c.id)
)


# ---------------------------------------------------------------- assignment state
_assign_thread_lock = threading.RLock()
_LOOKBACK = 2000  # embedding ids re-checked below the newest seen (see Assigner.refresh)
_ADVISORY_KEY = 0x511F_11A7  # "sliplink" assignment lock

# the refresh's statements, built once: building them cost ~6% of a slip check's CPU
_TOPS = select(
    select(func.max(ClusterEvent.id))
    .where(ClusterEvent.kind == EventKind.recluster)
    .scalar_subquery(),
    select(func.max(Embedding.id)).scalar_subquery(),
    select(func.max(ClusterMember.id)).scalar_subquery(),
)
_MEMBERS_AFTER = (
    select(ClusterMember.id, ClusterMember.slip_id, ClusterMember.cluster_id)
    .where(
        col(ClusterMember.model_version) == bindparam("version"),
        col(ClusterMember.id) > bindparam("last"),
    )
    .order_by(col(ClusterMember.id))
)
_MINE = and_(col(Embedding.model_version) == bindparam("version"), col(Embedding.usable))
# rows of other versions or unusable ones come as ids only; below the lookback window
# (the first read) only this version's rows matter
_EMBEDDING_ROWS = select(
    Embedding.id, Embedding.slip_id, case((_MINE, Embedding.vector), else_=None)
)
_BELOW_WINDOW = or_(col(Embedding.id) > bindparam("floor"), _MINE)
_EMBEDDINGS_AFTER = _EMBEDDING_ROWS.where(
    col(Embedding.id) > bindparam("last"), _BELOW_WINDOW
).order_by(col(Embedding.id))
# a second statement, not an empty IN list in the first: PostgreSQL plans an OR with the
# pending ids as a scan of the table
_EMBEDDINGS_AFTER_OR_PENDING = _EMBEDDING_ROWS.where(
    or_(
        col(Embedding.id) > bindparam("last"),
        col(Embedding.id).in_(bindparam("pending", expanding=True)),
    ),
    _BELOW_WINDOW,
).order_by(col(Embedding.id))


@contextmanager
def assignment_lock(session: Session):  # type: ignore[no-untyped-def]
    """Serialise cluster writers: a thread lock in process, and across processes and machines
    a PostgreSQL transaction-level advisory lock (released at commit) or, on SQLite, the
    database write lock taken up front."""
    with _assign_thread_lock:
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_KEY})
        elif dialect == "sqlite":
            session.execute(text("UPDATE model_activations SET id = id WHERE 0 = 1"))
        yield


class Assigner:
    """The in-memory vector index and slip -> cluster map of one model version.

    Built from the database at first use and kept current: before each assignment it reads
    embeddings and memberships newer than the last ids it saw (memberships are replaced, not
    updated, when a slip changes cluster), and reads every membership again after a
    re-clustering run.  The first, full build runs in the background (:func:`start_index_build`).
    """

    def __init__(self, model_version: str) -> None:
        self.model_version = model_version
        self.invalidate()

    def invalidate(self) -> None:
        self.index: Any = None
        self.slip_cluster: dict[int, int] = {}
        self.sizes: Counter[int] = Counter()
        # cluster id -> its slips: a joining slip is averaged against them all
        self.members: defaultdict[int, set[int]] = defaultdict(set)
        self.last_embedding = 0
        # ids below last_embedding not visible yet when last read (see _read_embeddings)
        self.pending: set[int] = set()
        self.last_member = 0
        self.epoch: int | None = None
        # score offsets of indexed slips (normalised live points), and the index size they
        # were measured at: see known_offsets
        self.offsets: dict[int, float] = {}
        self.offsets_at = 0

    def known_offsets(self) -> dict[int, float]:
        """Cached score offsets of indexed slips for live assignment on normalised scores.
        A slip's offset (its mean similarity at neighbour ranks 5-15) rises as look-alikes
        arrive, so the cache is dropped whenever the index has grown by a quarter since it
        was started (cv.cluster.OFFSETS_REFRESH, which the benchmarks' replays use too);
        each miss costs one index search."""
        from cv.cluster import OFFSETS_REFRESH

        size = len(self.index) if self.index is not None else 0
        if size > OFFSETS_REFRESH * max(self.offsets_at, 1):
            self.offsets, self.offsets_at = {}, size
        return self.offsets

    def remember_offsets(self, assignment: Any, slip_id: int | None) -> None:
        """Keep the offsets an assignment measured (its neighbours', and the slip's own when
        it is stored)."""
        self.offsets.update(assignment.new_offsets)
        if slip_id is not None and assignment.offset is not None:
            self.offsets[slip_id] = float(assignment.offset)

    @staticmethod
    def _tops(session: Session) -> tuple[int, int, int]:
        """(last re-clustering event, newest embedding, newest membership) in one query."""
        row = session.exec(_TOPS).one()
        return int(row[0] or 0), int(row[1] or 0), int(row[2] or 0)

    def refresh(self, session: Session, *, dim: int) -> None:
        """Catch up with the database: a full build when cold (or the tables were emptied, or
        the dimension changed), else only the rows newer than those seen.  A re-clustering
        replaces memberships, never embeddings: the vector index stays and only the slip ->
        cluster map is read again (rebuilding the index took 50-130 s at 200k slips)."""
        from cv.index import VectorIndex

        epoch, top_embedding, top_member = self._tops(session)
        # ids going backwards means the tables were emptied (restore, test truncation)
        rewound = top_embedding < self.last_embedding or top_member < self.last_member
        if rewound or self.index is None or self.index.dim != dim:
            self.invalidate()
            self.index, self.epoch = VectorIndex(dim), epoch
        elif epoch != self.epoch:
            self.slip_cluster, self.sizes, self.last_member = {}, Counter(), 0
            self.members = defaultdict(set)
            self.epoch = epoch
        self._read_embeddings(session, top_embedding)
        members = session.exec(
            _MEMBERS_AFTER, params={"version": self.model_version, "last": self.last_member}
        ).all()
        for mid, slip_id, cluster_id in members:
            self._set(int(slip_id), cluster_id)
            self.last_member = int(mid or 0)

    def _read_embeddings(self, session: Session, top: int) -> None:
        """Index the usable embeddings of this version not read yet.

        Ids are taken at insert but rows become visible at commit, so extraction commits
        embeddings out of id order: ids at or below the newest one read that were not
        visible then are kept in ``pending`` and asked for again, as long as they are within
        ``_LOOKBACK`` of the newest (a rolled-back insert leaves an id that never comes).
        Rows of other versions or unusable ones are read as ids only, so that they are
        known; only this version's usable vectors are transferred.
        """
        if top <= self.last_embedding and not self.pending:
            return
        params: dict[str, Any] = {
            "version": self.model_version,
            "last": self.last_embedding,
            "floor": top - _LOOKBACK,
        }
        statement = _EMBEDDINGS_AFTER
        if self.pending:
            statement, params["pending"] = _EMBEDDINGS_AFTER_OR_PENDING, sorted(self.pending)
        rows = session.exec(statement, params=params).all()
        vectors = [(int(r[1]), r[2]) for r in rows if r[2] is not None]
        for start in range(0, len(vectors), 5000):
            chunk = vectors[start : start + 5000]
            self.index.add(
                np.array([sid for sid, _ in chunk], dtype=np.int64),
                np.stack([np.frombuffer(v, dtype="<f4") for _, v in chunk]),
            )
        # ids of stored rows are never None
        newest = max(top, int(rows[-1][0]) if rows else 0)  # type: ignore[arg-type]
        seen = {int(r[0]) for r in rows}  # type: ignore[arg-type]
        floor = int(params["floor"])
        candidates = self.pending | set(range(max(self.last_embedding, floor) + 1, newest + 1))
        self.pending = {i for i in candidates - seen if i > newest - _LOOKBACK}
        self.last_embedding = newest

    def _index_own(self, slip_id: int, vector: NDArray[np.float32]) -> None:
        """Index the assigned slip itself unless a refresh already did: adding it again
        would only leave a tombstone behind (and, once there are enough, a full rebuild)."""
        if slip_id not in self.index:
            self.index.add(np.array([slip_id], dtype=np.int64), vector[None, :])

    def _set(self, slip_id: int, cluster_id: int | None) -> None:
        before = self.slip_cluster.pop(slip_id, None)
        if before is not None:
            self.sizes[before] -= 1
            self.members[before].discard(slip_id)
            if not self.members[before]:
                del self.members[before]
        if cluster_id is not None:
            self.slip_cluster[slip_id] = int(cluster_id)
            self.sizes[int(cluster_id)] += 1
            self.members[int(cluster_id)].add(slip_id)

    def assign(self, job: SlipJob) -> int | None:
        """Decide and write the membership of ``job.slip_id``; returns its cluster id."""
        from cv.cluster import assign_incremental

        s, emb = job.session, job.embedding
        assert emb is not None
        # refresh first, always: every row written below must come after what others wrote
        self.refresh(s, dim=emb.dim)
        if not emb.usable:
            self._member(s, job.slip_id, None, 0.0)
            return None
        vector = emb.array()
        if job.threshold is not None:  # one threshold for every decision (tests, overrides)
            from cv.cluster import Calibration

            calibration = Calibration.uncalibrated(job.threshold)
        else:
            model = job.model or models.model_for(
                job.model_version, session=s, settings=job.settings
            )
            calibration = live_calibration(model)
        mine = job.slip_id
        must, cannot = _link_partners(s, mine)
        banned = {self.slip_cluster[p] for p in cannot if p in self.slip_cluster}
        confirmed = [self.slip_cluster[p] for p in must if p in self.slip_cluster]
        if confirmed and confirmed[0] not in banned:
            # a human confirmed this slip with a clustered one: that decides it
            job.grown = True
            return self._join(s, mine, confirmed[0], 1.0, vector)
        a = assign_incremental(
            vector,
            index=self.index,
            slip_cluster=self.slip_cluster,
            calibration=calibration,
            k=10,
            cannot_link_clusters=banned,
            slip_id=mine,
            cluster_sizes=self.sizes,
            offsets=self.known_offsets(),
            cluster_members=self.members,
        )
        self.remember_offsets(a, mine)
        if a.cluster_id is not None:
            job.grown = True
            return self._join(s, mine, a.cluster_id, a.confidence, vector)
        if a.starts_cluster:
            return self._start(s, mine, a.joined_slip_ids, a.confidence, vector)
        self._index_own(mine, vector)
        self._member(s, mine, None, float(a.confidence))
        return None

    def _member(self, s: Session, slip_id: int, cluster_id: int | None, conf: float) -> None:
        row = ClusterMember(
            slip_id=slip_id,
            model_version=self.model_version,
            cluster_id=cluster_id,
            confidence=float(np.clip(conf, 0.0, 1.0)),
        )
        s.add(row)
        s.flush()
        # last_member is left alone: only refresh() advances it, so a row another assigner
        # wrote with a lower id can never be skipped (the next refresh re-reads this one)
        self._set(slip_id, cluster_id)

    def _join(self, s: Session, slip_id: int, cluster_id: int, conf: float, vector: NDArray) -> int:
        cluster = s.get(WriterCluster, cluster_id)
        assert cluster is not None
        cluster.size += 1
        cluster.updated_at = utcnow()
        s.add(cluster)
        self._member(s, slip_id, cluster_id, conf)
        s.add(
            ClusterEvent(
                cluster_id=cluster_id,
                kind=EventKind.grown,
                detail={"slip_ids": [slip_id], "confidence": round(conf, 4)},
            )
        )
        self._index_own(slip_id, vector)
        return cluster_id

    def _start(
        self, s: Session, slip_id: int, joined: list[int], conf: float, vector: NDArray
    ) -> int:
        cluster = WriterCluster(model_version=self.model_version, size=1 + len(joined))
        s.add(cluster)
        s.flush()
        cid = int(cluster.id)  # type: ignore[arg-type]
        # the neighbours were on their own: their rows are replaced (new ids, see class doc)
        s.exec(
            delete(ClusterMember).where(  # type: ignore[call-overload]
                col(ClusterMember.slip_id).in_(joined),
                col(ClusterMember.model_version) == self.model_version,
            )
        )
        for other in sorted(joined):
            self._member(s, other, cid, conf)
        self._member(s, slip_id, cid, conf)
        s.add(
            ClusterEvent(
                cluster_id=cid,
                kind=EventKind.created,
                detail={"slip_ids": sorted([slip_id, *joined]), "confidence": round(conf, 4)},
            )
        )
        self._index_own(slip_id, vector)
        return cid


_assigners: dict[tuple[str, str], Assigner] = {}


def _link_partners(session: Session, slip_id: int) -> tuple[list[int], list[int]]:
    """(confirmed, rejected) partners of one slip from human link decisions; the latest
    decision on a pair wins (as ``clustering.link_constraints``, reading only this slip's)."""
    from store.clustering import Decision, LinkDecision

    latest: dict[int, str] = {}  # Decision is a str enum; the column reads back as str
    for a, b, decision in session.exec(
        select(LinkDecision.slip_a, LinkDecision.slip_b, LinkDecision.decision)
        .where(or_(col(LinkDecision.slip_a) == slip_id, col(LinkDecision.slip_b) == slip_id))
        .order_by(col(LinkDecision.id))
    ).all():
        latest[int(b if a == slip_id else a)] = decision
    confirmed = sorted(p for p, d in latest.items() if d == Decision.confirmed)
    return confirmed, sorted(p for p, d in latest.items() if d != Decision.confirmed)


def model_calibration(model: Any) -> Calibration:
    """The model's clustering operating points (`cv.cluster.calibration_of`: the merge
    threshold and confidence logistic measured on its fit data) with the slip-to-slip pair
    threshold the registry calibrated, when it did (`workers.model.threshold`).  Incremental
    decisions are on raw cosine; the calibration's ``batch`` (normalised scores) is for the
    re-cluster (`cv.cluster.cluster_calibrated`)."""
    from dataclasses import replace

    from cv.cluster import Calibration, calibration_of

    calibration = calibration_of(model)
    pair = models.threshold(model)
    if not calibration.calibrated:
        return Calibration.uncalibrated(pair)
    return replace(calibration, pair_threshold=pair)


def live_calibration(model: Any) -> Calibration:
    """The operating points of live decisions (assigning an arriving slip, the counter
    check): the model's ``live`` points on normalised scores when it has them, else
    :func:`model_calibration`'s raw ones.  A pair threshold an operator calibrated in the
    registry (`sliplink models calibrate`, raw cosine on reviewed pairs) keeps the raw points.

    Raw cosine cannot part look-alike hands: replayed held-out generated arrivals linked
    at pairwise precision 0.62 (60 writers) and 0.77 (240) on it, 0.84 and 0.88 on the
    normalised points, with twice the recall; on smaller fits the trade can go the other
    way (cv.embed.LIVE_FOLD_PRECISION)."""
    from cv.cluster import calibration_of

    calibration = calibration_of(model)
    own = getattr(model, "threshold_", None)
    operator_set = own is None or abs(models.threshold(model) - float(own)) > 1e-9
    if calibration.calibrated and calibration.live is not None and not operator_set:
        return calibration.live
    return model_calibration(model)


def would_join(
    *,
    session: Session,
    model_version: str,
    vector: NDArray[np.float32],
    threshold: float | None = None,
    calibration: Calibration | None = None,
) -> tuple[int, float] | None:
    """(cluster id, confidence) a slip with this embedding would join, writing nothing; None
    when it would stay alone.  Read-only use of the assignment index (e.g. counter checks)."""
    return match_slip(
        session=session,
        model_version=model_version,
        vector=vector,
        threshold=threshold,
        calibration=calibration,
        k=10,
    ).cluster


@dataclass(frozen=True)
class SlipMatch:
    """What the assignment index says about a slip that is not stored: the cluster it would
    join (``(cluster id, confidence)`` or None) and its nearest stored slips, best first, as
    ``(slip id, cosine similarity, cluster id or None)``: singletons included.

    ``source`` is ``"index"`` (every stored slip of the version searched) or ``"recent"``
    (the index was still being built: an exact search over the ``searched`` newest slips)."""

    cluster: tuple[int, float] | None
    neighbours: list[tuple[int, float, int | None]]
    source: str = "index"
    searched: int | None = None
    # the one-to-one match threshold for the slips searched: the calibrated pair threshold
    # raised with their number (cv.cluster.Calibration.for_collection); None: nothing searched
    pair_threshold: float | None = None
    # the scores the decision compared with it, by slip id (normalised when the live points
    # are; the neighbours' similarities above stay plain cosine, for display)
    scores: dict[int, float] = field(default_factory=dict)


# searched exactly while the index is built (a writer's latest slips are the ones a counter
# check most needs to see): read once per build (~0.1 s), ~10 ms per check after that
RECENT_SLIPS = 10_000


def match_slip(
    *,
    session: Session,
    model_version: str,
    vector: NDArray[np.float32],
    threshold: float | None = None,
    k: int = 10,
    calibration: Calibration | None = None,
    wait: float = 0.0,
) -> SlipMatch:
    """Read-only look-up of one embedding in the assignment index (one refresh, one search);
    ``calibration`` (else one ``threshold`` for every decision) decides the cluster.

    When the index is not built yet, its build starts in the background (once per process,
    database and version) and, after waiting at most ``wait`` seconds for it, the answer
    comes from an exact search over the newest ``RECENT_SLIPS`` slips (``source="recent"``):
    a check never waits for the whole build (tens of seconds at 10^5 slips, so waiting
    a little only adds latency: ``wait`` is 0 unless asked)."""
    from cv.cluster import assign_incremental

    dim = int(vector.shape[0])
    if not index_built(session.get_bind(), model_version, dim=dim):
        build = start_index_build(session.get_bind(), model_version, dim=dim)
        if not build.done.wait(wait):
            return _match_recent(build, session, vector, threshold, k, calibration)
    with _assign_thread_lock:
        assigner = _assigner(session, model_version)
        assigner.refresh(session, dim=dim)
        if assigner.index is None or len(assigner.index) == 0:
            return SlipMatch(None, [])
        scores, ids = assigner.index.search(vector, int(k))
        neighbours = [
            (int(i), float(sc), assigner.slip_cluster.get(int(i)))
            for i, sc in zip(ids[0].tolist(), scores[0].tolist(), strict=True)
            if i >= 0
        ]
        found = assign_incremental(
            vector,
            index=assigner.index,
            slip_cluster=assigner.slip_cluster,
            threshold=threshold,
            calibration=calibration,
            k=int(k),
            cluster_sizes=assigner.sizes,
            offsets=assigner.known_offsets(),
            cluster_members=assigner.members,
        )
        assigner.remember_offsets(found, None)  # the checked slip is not stored
    cluster = None if found.cluster_id is None else (int(found.cluster_id), float(found.confidence))
    return SlipMatch(
        cluster, neighbours, pair_threshold=found.pair_threshold, scores=dict(found.neighbours)
    )


_RECENT = (
    select(Embedding.id, Embedding.slip_id, Embedding.vector)
    .where(
        col(Embedding.model_version) == bindparam("version"),
        col(Embedding.usable),
        col(Embedding.id) > bindparam("after"),
    )
    .order_by(col(Embedding.id).desc())
    .limit(RECENT_SLIPS)  # written out: one generic plan for the prepared statement
)
_MEMBERSHIPS_OF = select(ClusterMember.slip_id, ClusterMember.cluster_id).where(
    col(ClusterMember.model_version) == bindparam("version"),
    col(ClusterMember.slip_id).in_(bindparam("slips", expanding=True)),
)
_CLUSTER_SIZES = (
    select(ClusterMember.cluster_id, func.count())
    .where(
        col(ClusterMember.model_version) == bindparam("version"),
        col(ClusterMember.cluster_id).in_(bindparam("clusters", expanding=True)),
    )
    .group_by(col(ClusterMember.cluster_id))
)


@dataclass
class _RecentSlips:
    """The newest slips' vectors, kept while the index builds: read once (~0.1 s for
    ``RECENT_SLIPS``), then only the slips embedded since are read by each check (a row
    committed late below the newest id read is missed until the index is ready)."""

    index: Any  # cv.index.VectorIndex, exact search
    last: int = 0  # newest embedding id read


def _read_recent(build: IndexBuild, session: Session, dim: int) -> _RecentSlips:
    """The build's newest slips, read first or brought up to date (under ``recent_lock``)."""
    from cv.index import VectorIndex

    if build.recent is None or build.recent.index.dim != dim:
        # always exact: it grows by the slips embedded during the build
        build.recent = _RecentSlips(VectorIndex(dim, exact_below=2**62))
    recent = build.recent
    params = {"version": build.key[1], "after": recent.last}
    rows = session.exec(_RECENT, params=params).all()
    if rows:
        recent.index.add(
            np.array([int(r[1]) for r in rows], dtype=np.int64),
            np.stack([np.frombuffer(r[2], dtype="<f4") for r in rows]),
        )
        recent.last = int(rows[0][0])  # type: ignore[arg-type]  # newest first
    return recent


def _match_recent(
    build: IndexBuild,
    session: Session,
    vector: NDArray[np.float32],
    threshold: float | None,
    k: int,
    calibration: Calibration | None,
) -> SlipMatch:
    """``match_slip`` while the index builds: exact cosine search over the newest slips of
    the version (and those embedded since), the neighbours' memberships and their clusters'
    full sizes read from the database."""
    from cv.cluster import assign_incremental

    version = build.key[1]
    with build.recent_lock:  # checks during the build take turns: a few ms each
        recent = _read_recent(build, session, int(vector.shape[0]))
        searched = len(recent.index)
        if not searched:
            return SlipMatch(None, [], source="recent", searched=0)
        scores, ids = recent.index.search(vector, int(k))
        found_ids = [int(i) for i in ids[0].tolist() if i >= 0]
        params: dict[str, Any] = {"version": version, "slips": found_ids}
        slip_cluster = {
            int(sid): int(cid)
            for sid, cid in session.exec(_MEMBERSHIPS_OF, params=params).all()
            if cid is not None
        }
        sizes: Counter[int] = Counter()
        clusters = sorted(set(slip_cluster.values()))
        if clusters:
            params = {"version": version, "clusters": clusters}
            counted = session.exec(_CLUSTER_SIZES, params=params).all()
            sizes.update({int(c or 0): int(n) for c, n in counted})  # c: IN a list, not NULL
        found = assign_incremental(
            vector,
            index=recent.index,
            slip_cluster=slip_cluster,
            threshold=threshold,
            calibration=calibration,
            k=int(k),
            cluster_sizes=sizes,
        )
    neighbours = [
        (int(i), float(sc), slip_cluster.get(int(i)))
        for i, sc in zip(ids[0].tolist(), scores[0].tolist(), strict=True)
        if i >= 0
    ]
    cluster = None if found.cluster_id is None else (int(found.cluster_id), float(found.confidence))
    return SlipMatch(
        cluster,
        neighbours,
        source="recent",
        searched=searched,
        pair_threshold=found.pair_threshold,
        scores=dict(found.neighbours),
    )


def _key(bind: Any, model_version: str) -> tuple[str, str]:
    url = bind.url if isinstance(bind, Engine) else bind.engine.url
    return url.render_as_string(hide_password=True), model_version


def _assigner(session: Session, model_version: str) -> Assigner:
    """The process's assigner for this database and model version."""
    key = _key(session.get_bind(), model_version)
    with _assign_thread_lock:
        if key not in _assigners:
            _assigners[key] = Assigner(model_version)
        return _assigners[key]


# ---------------------------------------------------------------- the index build
@dataclass
class IndexBuild:
    """One background build of a version's assignment index (``done`` is set at its end,
    built or failed)."""

    key: tuple[str, str]
    done: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    seconds: float | None = None
    slips: int = 0
    error: str | None = None
    # the newest slips searched meanwhile (``_match_recent``), dropped at the end
    recent: _RecentSlips | None = None
    recent_lock: threading.Lock = field(default_factory=threading.Lock)


_builds: dict[tuple[str, str], IndexBuild] = {}
_builds_lock = threading.Lock()  # bookkeeping only, never held while building


def index_built(bind: Any, model_version: str, *, dim: int | None = None) -> bool:
    """Whether this process holds the version's index (built, of this dimension)."""
    assigner = _assigners.get(_key(bind, model_version))
    index = assigner.index if assigner is not None else None
    return index is not None and (dim is None or index.dim == dim)


def start_index_build(bind: Any, model_version: str, *, dim: int | None = None) -> IndexBuild:
    """Build the version's index in a background thread, unless it is built or being built
    (then that build is returned): one build per process, database and version.  ``dim``
    defaults to that of the stored embeddings (nothing to build when there are none)."""
    key = _key(bind, model_version)
    with _builds_lock:
        build = _builds.get(key)
        if build is not None and (not build.done.is_set() or index_built(bind, model_version)):
            return build
        build = _builds[key] = IndexBuild(key)
    engine = bind if isinstance(bind, Engine) else bind.engine
    threading.Thread(
        target=_build_index,
        args=(build, engine, model_version, dim),
        name="sliplink-index-build",
        daemon=True,
    ).start()
    return build


def _build_index(build: IndexBuild, engine: Engine, model_version: str, dim: int | None) -> None:
    """Read the version's embeddings into a fresh assigner outside the assignment lock (the
    slow part: checks and assignments go on meanwhile), then make it the process's assigner;
    its next refresh catches up with what was written since."""
    import os

    try:
        # below request threads in CPU priority (Linux: per thread; faiss releases the GIL)
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass
    try:
        with Session(engine) as s:
            dim = dim or _stored_dim(s, model_version)
            if dim:
                with build.recent_lock:  # first: the checks meanwhile search these
                    _read_recent(build, s, dim)
                s.commit()  # the full read below in a transaction of its own
                fresh = Assigner(model_version)
                fresh.refresh(s, dim=dim)
                with _assign_thread_lock:
                    if not index_built(engine, model_version, dim=dim):
                        _assigners[build.key] = fresh
                build.slips = len(fresh.index)
        build.seconds = time.monotonic() - build.started
        log.info(
            "assignment index of %s: %d slips in %.1f s", model_version, build.slips, build.seconds
        )
    except Exception as exc:  # noqa: BLE001 - the next use builds it inline, as before
        build.error = f"{type(exc).__name__}: {exc}"
        log.exception("assignment index build of %s failed", model_version)
    finally:
        build.done.set()
        with build.recent_lock:
            build.recent = None


_STORED_DIM = (
    select(Embedding.dim)
    .where(col(Embedding.model_version) == bindparam("version"), col(Embedding.usable))
    .limit(1)
)


def _stored_dim(session: Session, model_version: str) -> int | None:
    dim = session.exec(_STORED_DIM, params={"version": model_version}).first()
    return int(dim) if dim else None


def warm_index_at_start(engine: Engine) -> threading.Thread:
    """At process start: build the active version's index in the background, so the first
    slip check or assignment finds it ready (or at least started)."""

    def run() -> None:
        try:
            with Session(engine) as s:
                version = clustering.active_model_version(session=s)
            if version:
                start_index_build(engine, version)
        except Exception:  # noqa: BLE001 - the first use starts the build instead
            log.exception("could not start the assignment index build")

    thread = threading.Thread(target=run, name="sliplink-index-warm", daemon=True)
    thread.start()
    return thread


def await_index(session: Session, model_version: str, *, dim: int) -> None:
    """Before taking the assignment lock: wait for the version's index when it is not built
    (started here when nobody has), rather than building a second one under the lock."""
    if not index_built(session.get_bind(), model_version, dim=dim):
        start_index_build(session.get_bind(), model_version, dim=dim).done.wait()


def index_status(bind: Any) -> dict[str, Any]:
    """The assignment index of this process for the database ``bind`` points at, for
    ``/readyz``: ``warm`` (built), ``building``, ``failed``, ``empty`` (nothing stored to
    index at start) or ``cold`` (not started)."""
    url = _key(bind, "")[0]
    builds = [b for (u, _), b in list(_builds.items()) if u == url]
    built = {v: a for (u, v), a in list(_assigners.items()) if u == url and a.index is not None}
    build = max(builds, key=lambda b: b.started) if builds else None
    if build is not None and not build.done.is_set():
        seconds = round(time.monotonic() - build.started, 1)
        return {"state": "building", "model_version": build.key[1], "seconds": seconds}
    version = build.key[1] if build is not None else next(iter(built), None)
    if version in built:
        return {"state": "warm", "model_version": version, "slips": len(built[version].index)}
    if build is None:
        return {"state": "cold"}
    if build.error:
        return {"state": "failed", "model_version": version, "error": build.error}
    return {"state": "empty", "model_version": version}


# ---------------------------------------------------------------- scheduled work
_FRESH = 1 << 40  # stable_relabel's fresh ids start here; real ids come from the database


def recluster(
    *,
    settings: Settings,
    now: datetime | None = None,
    k: int = 10,
    threshold: float | None = None,
    model_version: str | None = None,
) -> dict[str, Any]:
    """Full re-clustering of the window (``recluster_window_days``) with stable ids.

    Confirmed links are must-links and rejected ones cannot-links (``cv.cluster``), so no
    human decision is overridden; ids are carried over by ``stable_relabel``; every change is
    written to the cluster history.  Runs under the assignment lock.  Returns counts and,
    under ``triggers``, the ``slip_clustered`` rule triggers of the slips that moved.
    """
    from cv.cluster import Calibration, cluster_calibrated, stable_relabel

    now = now or utcnow()
    engine = get_engine(settings.effective_database_url)
    with Session(engine, expire_on_commit=False) as s, assignment_lock(s):
        version = model_version or models.ensure_active_model(session=s, settings=settings)
        since = now - timedelta(days=settings.recluster_window_days)
        rows = s.exec(
            select(Embedding.slip_id, Embedding.vector, Bet.customer_id)
            .join(Slip, col(Slip.id) == col(Embedding.slip_id))
            .join(Bet, col(Bet.id) == col(Slip.bet_id))
            .where(
                Embedding.model_version == version,
                Embedding.usable == True,  # noqa: E712
                col(Slip.uploaded_at) >= since,
            )
            .order_by(col(Embedding.slip_id))
        ).all()
        stats = {"slips": len(rows), "created": 0, "changed": 0, "events": 0}
        if len(rows) < 2:
            s.commit()
            return stats | {"triggers": []}
        ids = [int(r[0]) for r in rows]
        X = np.stack([np.frombuffer(r[1], dtype="<f4") for r in rows])
        pos = {sid: i for i, sid in enumerate(ids)}
        must, cannot = clustering.link_constraints(session=s, slip_ids=set(ids))
        if threshold is not None:  # one threshold for every decision (tests, overrides)
            calibration = Calibration.uncalibrated(threshold)
        else:
            calibration = model_calibration(models.model_for(version, session=s, settings=settings))
        labels, conf = cluster_calibrated(
            X,
            calibration,
            k=k,
            must_link=[(pos[a], pos[b]) for a, b in must],
            cannot_link=[(pos[a], pos[b]) for a, b in cannot],
            # a customer's other slips are left out of his slips' score offsets: a regular's
            # own slips would fill them and sink every score between his slips
            accounts=np.array([-1 if r[2] is None else r[2] for r in rows], dtype=np.int64),
        )
        members = {
            m.slip_id: m
            for m in s.exec(
                select(ClusterMember).where(
                    ClusterMember.model_version == version, col(ClusterMember.slip_id).in_(ids)
                )
            ).all()
        }
        old = {
            sid: (m.cluster_id if m.cluster_id is not None else -1) for sid, m in members.items()
        }
        mapping, events = stable_relabel(
            old, {sid: int(labels[pos[sid]]) for sid in ids}, next_id=_FRESH
        )
        real: dict[int, int] = {}
        for fresh in sorted({c for c in mapping.values() if c >= _FRESH}):
            cluster = WriterCluster(model_version=version)
            s.add(cluster)
            s.flush()
            real[fresh] = int(cluster.id)  # type: ignore[arg-type]
            stats["created"] += 1
        touched: set[int] = set()
        moved: list[tuple[int, int]] = []
        for sid in ids:
            target = mapping[sid]
            target_id: int | None = None if target < 0 else real.get(target, target)
            m = members.get(sid)
            c = float(conf[pos[sid]]) if target_id is not None else 0.0
            if m is not None and m.cluster_id == target_id:
                m.confidence = c
                s.add(m)
                continue
            if m is not None:
                if m.cluster_id is not None:
                    touched.add(m.cluster_id)
                s.delete(m)
                s.flush()
            s.add(
                ClusterMember(
                    slip_id=sid, model_version=version, cluster_id=target_id, confidence=c
                )
            )
            if target_id is not None:
                touched.add(target_id)
                moved.append((sid, target_id))
            stats["changed"] += 1
        s.flush()
        for cid in touched:
            _resize(s, cid)
        absorbed = {e.cluster_id for e in events if e.kind == "absorbed"}
        for e in events:
            cid = real.get(e.cluster_id, e.cluster_id)
            related = [real.get(r, r) for r in e.related]
            kind = {"absorbed": "merged"}.get(e.kind, e.kind)
            detail: dict[str, Any] = {
                "related": related,
                "slip_ids": list(e.slip_ids),
                "by": "recluster",
            }
            if e.kind == "absorbed":
                detail["into"] = related[0] if related else None
            s.add(ClusterEvent(cluster_id=cid, kind=EventKind(kind), detail=detail))
            stats["events"] += 1
        for cid in absorbed:
            gone = s.get(WriterCluster, cid)
            if gone is not None and gone.size == 0:
                gone.status = ClusterStatus.merged
                s.add(gone)
        s.add(
            ClusterEvent(
                cluster_id=None,
                kind=EventKind.recluster,
                detail=stats
                | {"model_version": version, "must_links": len(must), "cannot_links": len(cannot)},
            )
        )
        # rules re-run for every slip that changed cluster
        triggers = [_slip_trigger(s, sid, cid) for sid, cid in moved]
        s.commit()
    log.info("re-clustered: %s", stats)
    return stats | {"triggers": triggers}


def _resize(s: Session, cluster_id: int) -> None:
    cluster = s.get(WriterCluster, cluster_id)
    if cluster is None:
        return
    size = s.exec(
        select(func.count())
        .select_from(ClusterMember)
        .where(ClusterMember.cluster_id == cluster_id)
    ).one()
    cluster.size, cluster.updated_at = int(size), utcnow()
    if cluster.size == 0 and cluster.status == ClusterStatus.active:
        cluster.status = ClusterStatus.dissolved
    elif cluster.size > 0:
        cluster.status = ClusterStatus.active
    s.add(cluster)


#: Slips re-sent per sweep and kind: a re-embedding of millions of slips goes out in batches
#: (the next sweep sends the next batch once the queue has drained).
SWEEP_BATCH = 5000
#: Bets whose bet_placed rules are re-sent per sweep (~10 ms of rules each: a batch is
#: ~10 s of one rules worker, one sweep period)
RULES_SWEEP_BATCH = 1000


@dataclass(frozen=True)
class SweepResult:
    extract: list[int]
    assign: list[tuple[int, str]]
    # bet_placed triggers of bets whose rules have not run (publish lost)
    rules: list[dict[str, Any]] = field(default_factory=list)


def sweep(
    *,
    settings: Settings,
    config: PipelineConfig | None = None,
    queue_depths: dict[str, int] | None = None,
    leases_only: bool = False,
) -> SweepResult:
    """Slips whose task was lost: pending too long, processing past the lease, ready without
    an embedding of the active model (re-embedding) or without a membership; and bets whose
    bet_placed rules have not run (:func:`bets_awaiting_rules`).  With ``leases_only`` only
    the lost leases (one indexed query, run more often than the full sweep: a killed
    worker's slips are re-sent within ``lease_check_s`` of the lease's end).

    With a backlog in their queue (``queue_depths``, when known) pending and unassigned
    slips wait ``backlog_grace_s`` instead of ``pending_grace_s``: their messages are most
    likely still queued, and re-sending them would only grow the backlog.  Slips re-enqueued
    here get their ``updated_at`` touched, so each is re-sent at most once per grace period.
    """
    config = config or PipelineConfig.from_env()
    depths = queue_depths or {}
    now = utcnow()

    def grace_for(queue: str) -> datetime:
        wait = config.backlog_grace_s if depths.get(queue) else config.pending_grace_s
        return now - timedelta(seconds=max(wait, config.pending_grace_s))

    engine = get_engine(settings.effective_database_url)
    with Session(engine) as s:
        version = "" if leases_only else clustering.active_model_version(session=s)
        pending = (
            []
            if leases_only
            else list(
                s.exec(
                    select(Slip.id)
                    .where(
                        Slip.status == SlipStatus.pending,
                        col(Slip.updated_at) < grace_for("extract"),
                    )
                    .limit(SWEEP_BATCH)
                ).all()
            )
        )
        lost = s.exec(
            select(Slip.id).where(
                Slip.status == SlipStatus.processing,
                col(Slip.updated_at) < now - timedelta(seconds=config.lease_s),
            )
        ).all()
        stale: list[Any] = []
        unassigned: list[Any] = []
        if version and not depths.get("extract"):
            embedded = select(Embedding.slip_id).where(Embedding.model_version == version)
            stale = list(
                s.exec(
                    select(Slip.id)
                    .where(Slip.status == SlipStatus.ready, col(Slip.id).not_in(embedded))
                    .order_by(col(Slip.id))
                    .limit(SWEEP_BATCH)
                ).all()
            )
        if version:
            assigned = select(ClusterMember.slip_id).where(ClusterMember.model_version == version)
            unassigned = list(
                s.exec(
                    select(Embedding.slip_id)
                    .where(
                        Embedding.model_version == version,
                        col(Embedding.created_at) < grace_for("assign"),
                        col(Embedding.slip_id).not_in(assigned),
                    )
                    .limit(SWEEP_BATCH)
                ).all()
            )
        # lost slips go back to pending (their lease is over), and every slip re-sent here
        # starts a new grace period
        touch = [int(i) for i in [*pending, *lost]]
        for start in range(0, len(touch), 500):
            s.exec(
                update(Slip)  # type: ignore[call-overload]
                .where(col(Slip.id).in_(touch[start : start + 500]))
                .values(updated_at=now, status=SlipStatus.pending)
            )
        rules = [] if leases_only else bets_awaiting_rules(s, grace_for("rules"), now)
        s.commit()
    extract = sorted({int(i) for i in [*pending, *lost, *stale]})
    return SweepResult(extract, [(int(i), version) for i in sorted(unassigned)], rules)


def bets_awaiting_rules(
    s: Session, before: datetime, now: datetime, *, limit: int = RULES_SWEEP_BATCH
) -> list[dict[str, Any]]:
    """The bet_placed triggers of bets whose rules have waited since before ``before`` (the
    publish after their commit was lost: broker down, API killed in between), oldest first,
    at most ``limit``.  Each gets ``rules_pending_since = now``: re-sent at most once per
    grace period, and a concurrent sweep (which re-checks the row) does not send it too.
    The trigger's ``at`` is the bet's ``created_at``, as the API would have sent it."""
    due = _BETS.c.rules_pending_since < before
    oldest = select(_BETS.c.id).where(due).order_by(_BETS.c.rules_pending_since).limit(limit)
    rows = s.connection().execute(
        update(_BETS)
        .where(_BETS.c.id.in_(oldest.scalar_subquery()), due)
        .values(rules_pending_since=now)
        .returning(_BETS.c.id, _BETS.c.customer_id, _BETS.c.created_at)
    )
    return [
        {"kind": "bet_placed", "at": as_utc(created).isoformat(), "bet_id": int(bet_id),
         "customer_id": customer_id}
        for bet_id, customer_id, created in sorted(rows.all())
    ]  # fmt: skip


def purge_retention(*, settings: Settings, now: datetime | None = None) -> int:
    """Drop slip images and their embeddings/memberships older than ``retention_days``
    (bets stay: they are business records).  Returns the number of slips purged."""
    now = now or utcnow()
    cutoff = now - timedelta(days=settings.retention_days)
    engine = get_engine(settings.effective_database_url)
    with Session(engine) as s:
        old = list(s.exec(select(Slip.id).where(col(Slip.uploaded_at) < cutoff)).all())
        for start in range(0, len(old), 500):
            chunk = old[start : start + 500]
            for sid in chunk:
                clustering.reset_slip(s, int(sid))  # type: ignore[arg-type]
            s.exec(delete(SlipImage).where(col(SlipImage.slip_id).in_(chunk)))  # type: ignore[call-overload]
        if old:
            audit.record(
                s,
                actor="system",
                action="retention.purge",
                entity="slip",
                after={"slips": len(old), "before": cutoff.isoformat()},
            )
        s.commit()
    return len(old)


def apply_exclusions_now(*, settings: Settings, now: datetime | None = None) -> dict[str, int]:
    """The daily self-exclusion pass (``store.exclusions.apply_exclusions``): exclusions that
    start today take effect, ended ones past their 24 h cooling-off are reinstated."""
    from store.exclusions import apply_exclusions

    engine = get_engine(settings.effective_database_url)
    with Session(engine) as session:
        counts = apply_exclusions(session=session, now=now or utcnow())
        session.commit()
    return counts


def run_screening(*, settings: Settings) -> int:
    """Daily screening rules (``rules.engine.run_screening``), if the engine is installed."""
    try:
        from rules.engine import run_screening as screen
    except ImportError:
        return 0
    engine = get_engine(settings.effective_database_url)
    with Session(engine, expire_on_commit=False) as session:
        alerts = screen(session=session)
        session.commit()
    return len(alerts or [])


def flow_status(*, session: Session, now: datetime | None = None) -> dict[str, float | None]:
    """Lag of processing behind uploads: age of the oldest unprocessed slip, seconds since
    the last upload, counts by status."""
    now = now or utcnow()
    oldest = session.exec(
        select(func.min(Slip.uploaded_at)).where(
            col(Slip.status).in_([SlipStatus.pending, SlipStatus.processing])
        )
    ).first()
    last = session.exec(select(func.max(Slip.uploaded_at))).first()
    return {
        "oldest_pending_age_s": (now - as_utc(oldest)).total_seconds() if oldest else 0.0,
        "since_last_upload_s": (now - as_utc(last)).total_seconds() if last else None,
    }


def monitor_flow(
    *, settings: Settings, config: PipelineConfig | None = None, now: datetime | None = None
) -> list[str]:
    """Raise a system alert when processing lags behind uploads beyond the threshold, or the
    slip flow stops inside opening hours.  Returns the problems found.

    The alert goes to ``rules.engine.raise_system_alert`` when the rules engine provides it,
    otherwise to the audit log as ``system.flow_alert`` (at most one per problem per hour).
    """
    config = config or PipelineConfig.from_env()
    now = now or utcnow()
    engine = get_engine(settings.effective_database_url)
    problems: list[tuple[str, str]] = []
    with Session(engine) as s:
        st = flow_status(session=s, now=now)
        lag = st["oldest_pending_age_s"] or 0.0
        if lag > config.lag_alert_s:
            limit = config.lag_alert_s
            problems.append(
                ("pipeline_lag", f"processing lags uploads by {lag:.0f}s (limit {limit:.0f}s)")
            )
        since = st["since_last_upload_s"]
        open_, close = config.opening_hours
        if since is not None and open_ <= now.hour < close and since > config.silence_alert_s:
            problems.append(
                ("slip_flow_stopped", f"no slip uploaded for {since:.0f}s in opening hours")
            )
        figures = {"lag_s": lag, "since_last_upload_s": since or 0.0}
        for kind, problem in problems:
            _system_alert(s, kind, problem, figures=figures, now=now)
        s.commit()
    return [p for _, p in problems]


def _system_alert(
    s: Session, kind: str, problem: str, *, figures: dict[str, float], now: datetime
) -> None:
    log.warning("flow monitor: %s", problem)
    try:
        from rules.engine import raise_system_alert
    except ImportError:
        raise_system_alert = None  # type: ignore[assignment]
    if raise_system_alert is not None:
        # one open alert per kind; repeats count as hits
        raise_system_alert(session=s, kind=kind, reason=problem, figures=figures, now=now)
        return
    recent = s.exec(
        select(AuditEntry).where(
            AuditEntry.action == "system.flow_alert",
            col(AuditEntry.at) > now - timedelta(hours=1),
            AuditEntry.entity_id == kind,
        )
    ).first()
    if recent is None:
        audit.record(
            s,
            actor="system",
            action="system.flow_alert",
            entity="pipeline",
            entity_id=kind,
            after={"problem": problem, **figures},
        )


# ---------------------------------------------------------------- the in-process pipeline
def _child_init() -> None:
    """A pipeline child process: below the API in CPU priority, one BLAS thread."""
    import os

    os.nice(10)
    single_threaded_math()


def _in_child(fn: Callable[..., Any], *args: Any) -> tuple[Any, list[tuple[str, float]]]:
    """Run a stage in a pipeline child process; errors come back as picklable classes."""
    from workers.metrics import capture

    timings = capture()
    try:
        return fn(*args), list(timings)
    except TRANSIENT as exc:
        raise StageTransient(f"{type(exc).__name__}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any other error: its type and text go back
        raise StageFailure(f"{type(exc).__name__}: {exc}") from None
    finally:
        timings.clear()


class InProcessPipeline:
    """The embedded default: the same stages, no broker.

    Extraction is fed by ``settings.in_process_workers`` threads; assignment and rules by
    one thread each (ordered, like the ``assign`` queue); the beat schedule runs in process
    (``workers.schedule.EmbeddedScheduler``: sweeper, rollout tick, flow monitor, daily and
    weekly jobs).  Transient errors are retried with backoff.

    The stages themselves run in a pool of child processes at a lower CPU priority
    (``inprocess_isolation``, on by default): inside the API process their CPU work would
    hold the GIL the request threads need and compete with them for the cores.
    """

    def __init__(
        self, settings: Settings, *, config: PipelineConfig | None = None, scheduler: bool = True
    ) -> None:
        self.settings = settings
        self.config = config or PipelineConfig.from_env()
        single_threaded_math()
        self._extract = ThreadPoolExecutor(settings.in_process_workers, "sliplink-extract")
        self._assign = ThreadPoolExecutor(1, "sliplink-assign")
        self._rules = ThreadPoolExecutor(1, "sliplink-rules")
        self._children: Any = None  # ProcessPoolExecutor, made at first use
        self._children_lock = threading.Lock()
        self._inflight: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()
        self._dropped_logged: dict[str, float] = {}
        self._count_lock = threading.Lock()
        self._stop = threading.Event()
        self.scheduler: EmbeddedScheduler | None = None
        if scheduler:
            # the beat schedule, in process; a sweep at start as a Celery worker does
            self.scheduler = EmbeddedScheduler(
                self.config, self.scheduled_jobs(), at_start=("sliplink.sweep",)
            ).start()

    # -- the pipeline interface
    def submit(self, slip_id: int, model_version: str | None = None) -> None:
        if self._admit("extract"):
            self._go(self._extract, "extract", self._do_extract, slip_id, model_version, 0)

    def submit_assign(self, slip_id: int, model_version: str | None = None) -> None:
        if self._admit("assign"):
            self._go(self._assign, "assign", self._do_assign, slip_id, model_version, 0)

    def submit_rules(self, trigger: dict[str, Any]) -> None:
        if self._admit("rules"):
            self._go(self._rules, "rules", self._do_rules, trigger, 0)

    def _admit(self, queue: str) -> bool:
        """Queues in memory are bounded (``inprocess_backlog``): under a sustained overload a
        new task is dropped rather than held forever.  A dropped slip stays pending and the
        sweeper sends it again, as it does a bet's dropped bet_placed trigger; another dropped
        rules trigger is counted and logged."""
        with self._count_lock:
            if self._inflight[queue] < self.config.inprocess_backlog:
                return True
            self._dropped[queue] += 1
            dropped, last = self._dropped[queue], self._dropped_logged.get(queue, 0.0)
            log_now = time.monotonic() - last > 60
            if log_now:
                self._dropped_logged[queue] = time.monotonic()
        DROPPED.labels(queue=queue).inc()
        if log_now:
            log.warning("in-process %s backlog full: %d tasks dropped so far", queue, dropped)
        return False

    def ping(self) -> str:
        return "ok" if not self._stop.is_set() else "error: stopped"

    def queue_depths(self) -> dict[str, int]:
        with self._count_lock:
            return {q: int(self._inflight[q]) for q in ("extract", "assign", "rules")}

    def wait_idle(self, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(self.queue_depths().values()):
                return True
            time.sleep(0.05)
        return False

    def shutdown(self) -> None:
        self._stop.set()
        if self.scheduler is not None:
            self.scheduler.stop()
        for pool in (self._extract, self._assign, self._rules):
            pool.shutdown(wait=True, cancel_futures=True)
        with self._children_lock:
            if self._children is not None:
                self._children.shutdown(wait=True, cancel_futures=True)
                self._children = None

    def child_pids(self) -> list[int]:
        """The process ids of the stage processes running now."""
        with self._children_lock:
            processes = getattr(self._children, "_processes", None) or {}
            return sorted(processes)

    def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a stage function: in a child process (isolation) or on this thread."""
        if not self.config.inprocess_isolation:
            return fn(*args)
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool
        from multiprocessing import get_context

        with self._children_lock:
            if self._children is None:
                workers = self.settings.in_process_workers + 2  # + assignment and rules
                self._children = ProcessPoolExecutor(
                    workers, mp_context=get_context("spawn"), initializer=_child_init
                )
            children = self._children
        try:
            result, timings = children.submit(_in_child, fn, *args).result()
        except BrokenProcessPool:
            # a child died (killed, out of memory): new children; its slip's lease runs out
            # and the sweeper sends it again, like a Celery worker's
            with self._children_lock:
                if self._children is children:
                    self._children = None
            children.shutdown(wait=False, cancel_futures=True)
            raise StageTransient("a pipeline child process died") from None
        for step, seconds in timings:
            observe(step, seconds)
        return result

    # -- internals
    def _go(
        self, pool: ThreadPoolExecutor, queue: str, fn: Callable[..., None], *args: Any
    ) -> None:
        if self._stop.is_set():
            return
        with self._count_lock:
            self._inflight[queue] += 1

        def run() -> None:
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - logged; the sweeper retries what is left
                log.exception("in-process %s task failed", queue)
            finally:
                with self._count_lock:
                    self._inflight[queue] -= 1

        try:
            pool.submit(run)
        except RuntimeError:  # shut down
            with self._count_lock:
                self._inflight[queue] -= 1

    def _retry_later(self, queue: str, fn: Callable[..., None], *args: Any, retries: int) -> None:
        if retries >= self.config.max_retries:
            log.error(
                "giving up %s%s after %d retries; the sweeper will retry", queue, args, retries
            )
            return
        pool = {"extract": self._extract, "assign": self._assign, "rules": self._rules}[queue]
        with self._count_lock:
            self._inflight[queue] += 1

        def later() -> None:
            with self._count_lock:
                self._inflight[queue] -= 1
            self._go(pool, queue, fn, *args[:-1], retries + 1)

        timer = threading.Timer(backoff(retries), later)
        timer.daemon = True
        timer.start()

    def _do_extract(self, slip_id: int, version: str | None, retries: int) -> None:
        try:
            outcome = self._run(extract_stage, slip_id, version, self.settings)
        except TRANSIENT as exc:
            log.warning("slip %s: transient %s, retrying", slip_id, type(exc).__name__)
            self._retry_later(
                "extract", self._do_extract, slip_id, version, retries, retries=retries
            )
            return
        except Exception as exc:  # noqa: BLE001 - any other error fails the slip with its reason
            reason = str(exc) if isinstance(exc, StageFailure) else f"{type(exc).__name__}: {exc}"
            mark_failed(slip_id, reason, self.settings)
            return
        if outcome.extracted:
            self.submit_assign(slip_id, outcome.model_version or version)

    def _do_assign(self, slip_id: int, version: str | None, retries: int) -> None:
        try:
            outcome = self._run(assign_stage, slip_id, version, self.settings)
        except TRANSIENT:
            self._retry_later("assign", self._do_assign, slip_id, version, retries, retries=retries)
            return
        for trigger in outcome.triggers:
            self.submit_rules(trigger)

    def _do_rules(self, trigger: dict[str, Any], retries: int) -> None:
        try:
            self._run(rules_stage, trigger, self.settings)
        except TRANSIENT:
            self._retry_later("rules", self._do_rules, trigger, retries, retries=retries)

    def sweep_now(self, leases_only: bool = False) -> SweepResult:
        result = sweep(settings=self.settings, config=self.config,
                       queue_depths=self.queue_depths(), leases_only=leases_only)  # fmt: skip
        for sid in result.extract:
            self.submit(sid)
        for sid, version in result.assign:
            self.submit_assign(sid, version)
        for trigger in result.rules:
            self.submit_rules(trigger)
        return result

    def scheduled_jobs(self) -> dict[str, Callable[..., object]]:
        """What each task of the beat schedule (``workers.schedule``) does in process: the
        same stage functions the Celery tasks call, on this pipeline's threads and child
        processes."""
        settings, config = self.settings, self.config

        def screening() -> None:
            self._run(_screening, settings)

        return {
            "sliplink.sweep": self.sweep_now,
            "sliplink.flow": lambda: monitor_flow(settings=settings, config=config),
            "sliplink.recluster": self.recluster_now,
            "sliplink.purge": lambda: purge_retention(settings=settings),
            "sliplink.exclusions": lambda: apply_exclusions_now(settings=settings),
            "sliplink.screening": lambda: self._go(self._rules, "rules", screening),
            "sliplink.rollout_tick": self.rollout_now,
            "sliplink.drift": lambda: self._run(_check_drift, settings),
        }

    def recluster_now(self) -> None:
        """Queue a full re-clustering on the assignment thread; rules follow for moved slips."""

        def run() -> None:
            for trigger in self._run(_recluster_triggers, self.settings):
                self.submit_rules(trigger)

        self._go(self._assign, "assign", run)

    def rollout_now(self) -> None:
        """Carry the running model rollout (started by ``sliplink models activate`` or the
        API, maybe in another process or before a restart) to its end: re-embed, re-cluster,
        switch.  Nothing to do (one query) when no rollout runs, or when a thread of this
        process runs it already (an activation through the API)."""
        from store.models_registry import running_rollout
        from workers import rollout

        if rollout.inline_running():
            return
        with Session(get_engine(self.settings.effective_database_url)) as s:
            if running_rollout(session=s) is None:
                return
        for trigger in self._run(_run_rollout, self.settings):
            self.submit_rules(trigger)


def _recluster_triggers(settings: Settings) -> list[dict[str, Any]]:
    return list(recluster(settings=settings)["triggers"])


def _screening(settings: Settings) -> int:
    return run_screening(settings=settings)


def _check_drift(settings: Settings) -> dict[str, Any]:
    from workers import rollout

    return rollout.check_drift(settings=settings)


def _run_rollout(settings: Settings) -> list[dict[str, Any]]:
    from workers import rollout

    triggers: list[dict[str, Any]] = []
    rollout.run_inline(settings=settings, triggers=triggers.append)
    return triggers


def pipeline_for(settings: Settings, **kwargs: Any) -> Any:
    """The pipeline for these settings: the Celery client with a broker, else in process."""
    if settings.embedded:
        return InProcessPipeline(settings, **kwargs)
    from workers.client import CeleryPipeline

    return CeleryPipeline(settings, **kwargs)
