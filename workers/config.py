"""Pipeline tunables, read from the environment (``SLIPLINK_`` prefix) once per process.

They live apart from ``store.settings.Settings`` because only the workers and their tests use
them; every default suits production.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def _float(name: str, default: float) -> float:
    raw = os.environ.get(f"SLIPLINK_{name}")
    return float(raw) if raw not in (None, "") else default


@dataclass(frozen=True)
class PipelineConfig:
    # prefix of the Celery queue names, so several deployments (or test runs) share a broker
    queue_prefix: str = ""
    # a slip left pending this long without being picked up is re-enqueued by the sweeper
    pending_grace_s: float = 60.0
    # with a backlog in its queue, a pending slip is re-enqueued only after this long
    backlog_grace_s: float = 600.0
    # a slip in "processing" whose lease was not renewed for this long is taken to be lost
    # (worker killed) and re-sent by the sweeper; a live worker renews it every heartbeat_s
    # (lease_s / 6) while it extracts, however long that takes.  A live worker loses it only
    # when six beats in a row fail to commit (database away > ~8 s), and even then the
    # keyed writes keep the effects exactly-once: only the extraction is done twice.
    # (30 s until 2026-12-05: a killed worker's slip came back after ~36 s, now ~11 s with
    # the lease check every lease_s / 5)
    lease_s: float = 10.0
    # how often the sweeper runs (beat / the in-process scheduler)
    sweep_every_s: float = 10.0
    # a slip claimed this many times without finishing is failed: it kills workers
    max_attempts: int = 5
    # flow monitor: alert when the oldest unprocessed slip is older than this
    lag_alert_s: float = 300.0
    # flow monitor: alert when no slip arrived for this long inside opening hours
    silence_alert_s: float = 1800.0
    opening_hours: tuple[int, int] = (9, 22)
    # retries of transient errors (database / broker connection lost)
    max_retries: int = 10
    # tasks waiting per queue in the in-process pipeline before new ones are dropped
    inprocess_backlog: int = 10_000
    # the in-process pipeline runs its stages in child processes of lower priority, so
    # their CPU and the GIL stay off the API's request path (off: threads of the API)
    inprocess_isolation: bool = True

    @classmethod
    def from_env(cls) -> PipelineConfig:
        hours = os.environ.get("SLIPLINK_OPENING_HOURS", "9-22").split("-")
        return cls(
            queue_prefix=os.environ.get("SLIPLINK_QUEUE_PREFIX", ""),
            pending_grace_s=_float("PENDING_GRACE_SECONDS", cls.pending_grace_s),
            backlog_grace_s=_float("BACKLOG_GRACE_SECONDS", cls.backlog_grace_s),
            lease_s=_float("LEASE_SECONDS", cls.lease_s),
            sweep_every_s=_float("SWEEP_SECONDS", cls.sweep_every_s),
            max_attempts=int(_float("MAX_ATTEMPTS", cls.max_attempts)),
            lag_alert_s=_float("LAG_ALERT_SECONDS", cls.lag_alert_s),
            silence_alert_s=_float("SILENCE_ALERT_SECONDS", cls.silence_alert_s),
            opening_hours=(int(hours[0]), int(hours[1])),
            max_retries=int(_float("MAX_RETRIES", cls.max_retries)),
            inprocess_backlog=int(_float("INPROCESS_BACKLOG", cls.inprocess_backlog)),
            inprocess_isolation=os.environ.get("SLIPLINK_INPROCESS_ISOLATION", "1") != "0",
        )

    @property
    def heartbeat_s(self) -> float:
        """How often a worker renews the lease of the slip it extracts: several beats fit in
        one lease, so a late beat on a busy machine does not lose it."""
        return self.lease_s / 6

    @property
    def lease_check_s(self) -> float:
        """How often lost leases are looked for (a cheap query, between full sweeps)."""
        return min(self.sweep_every_s, self.lease_s / 5)

    def queue(self, name: str) -> str:
        return f"{self.queue_prefix}{name}"
