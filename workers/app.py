"""The Celery app: JSON messages, late acks, one message at a time per process, named queues.

Queues (names prefixed with ``SLIPLINK_QUEUE_PREFIX``):

- ``extract``      feature extraction; scale it out on its own machines
                   (``sliplink worker --queues extract --concurrency N``)
- ``assign``       cluster assignment and re-clustering; consume it with exactly ONE worker
                   process (``sliplink worker --queues assign --concurrency 1``).  A
                   PostgreSQL advisory lock also serialises assigners, so a second consumer
                   is safe, only pointless.
- ``rules``        event-driven rules and the daily screening
- ``maintenance``  sweeper, retention purge, flow monitor

``sliplink worker`` with no ``--queues`` consumes all of them and runs the beat scheduler
(``-B``); run exactly one such worker, or run ``celery -A workers.app beat`` separately.
(A second beat only repeats idempotent work.)

Engines are built per worker process in ``worker_process_init``, never at import.
"""

from __future__ import annotations

import logging

from celery import Celery, signals

from workers.config import PipelineConfig

log = logging.getLogger("sliplink.workers")

QUEUES = ("extract", "assign", "rules", "maintenance")

ROUTES = {
    "sliplink.extract": "extract",
    "sliplink.assign": "assign",
    "sliplink.recluster": "assign",
    "sliplink.rules": "rules",
    "sliplink.screening": "rules",
    "sliplink.sweep": "maintenance",
    "sliplink.purge": "maintenance",
    "sliplink.exclusions": "maintenance",
    "sliplink.flow": "maintenance",
    "sliplink.reembed": "maintenance",
    "sliplink.rollout_tick": "maintenance",
    "sliplink.reembed_batch": "extract",
    "sliplink.rollout_finish": "assign",
    "sliplink.drift": "maintenance",
}


def make_celery(broker_url: str | None, *, config: PipelineConfig | None = None) -> Celery:
    """A Celery app for ``broker_url`` (``redis://`` or ``amqp://``)."""
    from workers.schedule import beat_schedule

    config = config or PipelineConfig.from_env()
    app = Celery("sliplink", broker=broker_url or "memory://", set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,  # state lives in our tables, not a result backend
        task_acks_late=True,  # ack after the work: a killed worker's message is redelivered
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a long extraction never holds other slips hostage
        task_default_queue=config.queue("extract"),
        task_routes={name: {"queue": config.queue(q)} for name, q in ROUTES.items()},
        task_create_missing_queues=True,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        # redelivery of an unacked message after a worker vanished; the sweeper usually
        # gets there first (lease_s), a redelivered duplicate is harmless
        broker_transport_options={
            "visibility_timeout": 3600,
            "socket_timeout": 5,
            "socket_connect_timeout": 3,
        },
        task_publish_retry=False,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        timezone="UTC",
        enable_utc=True,
        beat_schedule=beat_schedule(config),
    )
    return app


def _settings():  # type: ignore[no-untyped-def]
    from store.settings import get_settings

    return get_settings()


app = make_celery(_settings().broker_url)
app.conf.include = ["workers.tasks", "workers.model_tasks"]


# whether this worker consumes the assign queue (set before the pool forks its processes)
_consumes_assign = False


@signals.celeryd_after_setup.connect
def _note_queues(sender=None, instance=None, **_kwargs: object) -> None:  # type: ignore[no-untyped-def]
    global _consumes_assign
    names = set(instance.app.amqp.queues.consume_from or ()) if instance is not None else set()
    _consumes_assign = PipelineConfig.from_env().queue("assign") in names


@signals.worker_process_init.connect
def _init_process(**_kwargs: object) -> None:
    """Fresh engine per forked process: pooled connections must not cross a fork.  The first
    pool process of a worker consuming assign starts building the assignment index at once,
    in the background (its first assignment waits for that build instead of making one
    under the lock); one per worker, as a build costs a core for about a minute at 200k
    slips.  Another pool process that gets an assignment builds its own then, as before."""
    from celery.utils.log import current_process_index

    from store.db import dispose_engines, get_engine
    from workers.pipeline import single_threaded_math, warm_index_at_start

    dispose_engines()
    engine = get_engine(_settings().effective_database_url)
    single_threaded_math()
    if _consumes_assign and current_process_index(base=0) in (0, None):
        warm_index_at_start(engine)


@signals.worker_ready.connect
def _sweep_at_start(sender=None, **_kwargs: object) -> None:  # type: ignore[no-untyped-def]
    """Pick up whatever was lost while no worker ran."""
    try:
        app.send_task("sliplink.sweep", queue=PipelineConfig.from_env().queue("maintenance"))
    except Exception:  # noqa: BLE001 - the beat sweeper will run anyway
        log.exception("could not enqueue the start-up sweep")


def run_worker(
    *,
    queues: list[str],
    concurrency: int,
    beat: bool | None = None,
    loglevel: str = "INFO",
    supervise: bool = True,
) -> int:
    """``sliplink worker``: consume ``queues`` (default all) with ``concurrency`` processes;
    the beat scheduler runs embedded when all queues are consumed (or ``beat=True``).

    With ``supervise`` the Celery worker runs as a child process that is started again
    (with backoff) whenever it dies of an error: kombu's Redis transport can crash the
    worker when the broker vanishes while messages are unacknowledged, and a worker must
    come back with the broker without an operator.  SIGTERM/SIGINT stop both.
    """
    import subprocess
    import sys
    import time
    import uuid

    from store.db import migrate

    config = PipelineConfig.from_env()
    names = queues or list(QUEUES)
    unknown = sorted(set(names) - set(QUEUES))
    if unknown:
        raise SystemExit(f"--queues: unknown queue(s) {', '.join(unknown)}; use {QUEUES}")
    if names == ["assign"] and concurrency > 1:
        log.warning("the assign queue wants concurrency 1; assignments are serialised anyway")
    settings = _settings()
    migrate(settings.effective_database_url)
    argv = [
        "worker",
        f"--queues={','.join(config.queue(q) for q in names)}",
        f"--concurrency={concurrency}",
        f"--loglevel={loglevel}",
        f"--hostname=sliplink-{uuid.uuid4().hex[:8]}@%h",
        "--pool=prefork",
        "--without-mingle",  # nothing to sync: state lives in the database
        "--without-gossip",
    ]
    if beat if beat is not None else not queues:
        schedule = settings.data_dir / "celerybeat-schedule"
        schedule.parent.mkdir(parents=True, exist_ok=True)
        argv += ["--beat", f"--schedule={schedule}"]
    if not supervise:
        app.worker_main(argv)
        return 0
    return _supervise(
        [sys.executable, "-m", "celery", "-A", "workers.app", *argv], time, subprocess
    )


def _supervise(cmd: list[str], time, subprocess) -> int:  # type: ignore[no-untyped-def]
    import signal

    stopping = False
    child = None

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    failures = 0
    while True:
        started = time.monotonic()
        child = subprocess.Popen(cmd)
        rc = child.wait()
        if stopping or rc == 0:
            return int(rc)
        failures = 1 if time.monotonic() - started > 60 else failures + 1
        delay = min(30.0, 2.0 ** min(failures, 5))
        log.error("the Celery worker exited with %s; starting it again in %.0fs", rc, delay)
        time.sleep(delay)
