"""The API side of the Celery pipeline: publish task messages by name, never block uploads.

If the broker is down when a slip is uploaded, the upload still succeeds (the error is
logged, the slip stays pending) and the sweeper enqueues it once the broker is back.  After a
failed publish, publishing is skipped for a few seconds so a broker outage does not slow
every upload down by a connection timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from store.settings import Settings
from workers.app import QUEUES, make_celery
from workers.config import PipelineConfig

log = logging.getLogger("sliplink.pipeline")

_BACKOFF_S = 5.0


def queue_depths(conn: Any, config: PipelineConfig) -> dict[str, int] | None:
    """Messages waiting per queue (Redis: list length; AMQP: passive declare); None when
    the broker does not answer."""
    out: dict[str, int] = {}
    try:
        conn.ensure_connection(max_retries=1, timeout=2)
        channel = conn.default_channel
        for q in QUEUES:
            name = config.queue(q)
            client = getattr(channel, "client", None)
            if client is not None and hasattr(client, "llen"):
                # kombu's Redis transport keeps priority sub-queues beside the main list
                out[q] = sum(int(client.llen(n)) for n in _redis_names(name))
            else:
                out[q] = int(channel.queue_declare(name, passive=True).message_count)
    except Exception as exc:  # noqa: BLE001 - callers treat unknown depth as "unknown"
        log.warning("queue depth unavailable: %s", exc)
        return None
    return out


def _redis_names(name: str) -> list[str]:
    sep = "\x06\x16"
    return [name] + [f"{name}{sep}{p}" for p in (3, 6, 9)]


class CeleryPipeline:
    def __init__(self, settings: Settings, *, config: PipelineConfig | None = None) -> None:
        self.settings = settings
        self.config = config or PipelineConfig.from_env()
        self.app = make_celery(settings.broker_url, config=self.config)
        self._down_until = 0.0
        self._lock = threading.Lock()  # guards the producer, which is not thread-safe
        self._producer: Any = None
        self._declared: set[str] = set()  # task names whose queue this producer declared

    def _send(self, name: str, args: list[Any]) -> bool:
        if time.monotonic() < self._down_until:
            log.warning("broker recently down: %s%s left for the sweeper", name, args)
            return False
        try:
            with self._lock:
                if self._producer is None:
                    # one producer on one broker connection, kept between messages (taking
                    # one from the pool for each message cost ~a fifth of a publish)
                    self._producer = self.app.amqp.Producer(self.app.connection_for_write())
                    self._declared.clear()
                # argsrepr (what logs and monitors show of the arguments): the built-in
                # repr of these few ids; Celery's own safe repr of them cost ~a fifth of a
                # publish.  The task's queue is declared by the first publish on this
                # producer (kombu then only re-checks its cache of declared queues, ~a sixth
                # of a publish, so later ones pass declare=[]: the same message)
                self.app.send_task(
                    name, args=args, retry=False, producer=self._producer,
                    argsrepr=repr(args)[:1024], kwargsrepr="{}",
                    **({"declare": []} if name in self._declared else {}),
                )  # fmt: skip
                self._declared.add(name)
            return True
        except Exception as exc:  # noqa: BLE001 - any publish failure: the sweeper catches up
            self._drop_producer()  # its connection may be dead: a new one after the back-off
            self._down_until = time.monotonic() + _BACKOFF_S
            log.error(
                "could not enqueue %s%s (%s: %s); the sweeper will",
                name,
                args,
                type(exc).__name__,
                exc,
            )
            return False

    def warm(self) -> None:
        """Open the producer's broker connection now (server start): the first publish
        would otherwise pay ~80 ms for it.  A broker that is down does not hold the start up
        (one attempt, no retry); publishing then backs off as after a failed publish."""
        try:
            with self._lock:
                if self._producer is None:
                    self._producer = self.app.amqp.Producer(self.app.connection_for_write())
                    self._declared.clear()
                self._producer.connection.ensure_connection(max_retries=0, timeout=2)
        except Exception as exc:  # noqa: BLE001 - start anyway; the sweeper catches up
            self._drop_producer()
            self._down_until = time.monotonic() + _BACKOFF_S
            log.warning("broker not reachable at start-up: %s", exc)

    def submit(self, slip_id: int) -> bool:
        return self._send("sliplink.extract", [slip_id, None])

    def submit_rules(self, trigger: dict[str, Any]) -> bool:
        return self._send("sliplink.rules", [trigger])

    def send(self, name: str, *args: Any) -> bool:
        return self._send(name, list(args))

    def ping(self) -> str:
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
            return "ok"
        except Exception as exc:  # noqa: BLE001 - readiness reports any failure
            return f"error: {type(exc).__name__}"

    def queue_depths(self) -> dict[str, int]:
        with self.app.connection_for_read() as conn:
            return queue_depths(conn, self.config) or {}

    def _drop_producer(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.connection.release()
            except Exception:  # noqa: BLE001, S110 - a broken connection is dropped either way
                pass

    def shutdown(self) -> None:
        self._drop_producer()
        self.app.close()
