"""The schedule of periodic jobs: the sweeper, rollout tick and flow monitor often, the heavy
jobs once a day or week.  One definition, :func:`beat_schedule`, run by Celery beat with a
broker and by :class:`EmbeddedScheduler` in the embedded default."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from celery.schedules import crontab, maybe_schedule

from workers.config import PipelineConfig

log = logging.getLogger("sliplink.schedule")


def beat_schedule(config: PipelineConfig) -> dict[str, dict[str, Any]]:
    return {
        "sweep": {
            "task": "sliplink.sweep",
            "schedule": config.sweep_every_s,
            "options": {"queue": config.queue("maintenance"), "expires": 60},
        },
        # between full sweeps: slips of a killed worker, as soon as their lease ran out
        "lost-leases": {
            "task": "sliplink.sweep",
            "schedule": config.lease_check_s,
            "kwargs": {"leases_only": True},
            "options": {"queue": config.queue("maintenance"), "expires": 10},
        },
        "flow-monitor": {
            "task": "sliplink.flow",
            "schedule": 60.0,
            "options": {"queue": config.queue("maintenance"), "expires": 60},
        },
        "recluster": {
            "task": "sliplink.recluster",
            "schedule": crontab(hour=3, minute=0),
            "options": {"queue": config.queue("assign")},
        },
        "retention": {
            "task": "sliplink.purge",
            "schedule": crontab(hour=4, minute=0),
            "options": {"queue": config.queue("maintenance")},
        },
        # self-exclusions starting or ending today, before the 06:00 screening reads them
        "self-exclusions": {
            "task": "sliplink.exclusions",
            "schedule": crontab(hour=0, minute=5),
            "options": {"queue": config.queue("maintenance")},
        },
        "model-rollout": {
            "task": "sliplink.rollout_tick",
            "schedule": config.sweep_every_s,
            "options": {"queue": config.queue("maintenance"), "expires": 60},
        },
        "drift-watch": {
            "task": "sliplink.drift",
            "schedule": crontab(day_of_week=1, hour=5, minute=0),
            "options": {"queue": config.queue("maintenance")},
        },
        "screening": {
            "task": "sliplink.screening",
            "schedule": crontab(hour=6, minute=0),
            "options": {"queue": config.queue("rules")},
        },
    }


class EmbeddedScheduler:
    """The beat schedule run in process, for the embedded default (no broker, no beat).

    One thread reads :func:`beat_schedule` (the same entries, periods and crontabs Celery
    beat uses) and, when an entry is due, runs the in-process job registered for its task
    name on a thread of its own, so a long job never holds the clock up.  An entry whose last
    run is still going when it is due again is skipped, and an entry is first due
    one period (or at the next crontab time) after start; ``at_start`` names tasks run once
    at start (the sweep, as a Celery worker does when it comes up).  Entries may pass
    ``kwargs`` to their job, as beat passes them to the task."""

    def __init__(
        self,
        config: PipelineConfig,
        jobs: dict[str, Callable[..., object]],
        *,
        at_start: tuple[str, ...] = (),
        now: Callable[[], datetime] | None = None,
        tick_s: float = 1.0,
    ) -> None:
        self.entries = beat_schedule(config)
        missing = sorted({e["task"] for e in self.entries.values()} - set(jobs))
        if missing:
            raise ValueError(f"no in-process job for scheduled task(s) {', '.join(missing)}")
        self.jobs, self.at_start, self.tick_s = jobs, at_start, tick_s
        self.now = now or (lambda: datetime.now(UTC))
        self.schedules = {name: maybe_schedule(e["schedule"]) for name, e in self.entries.items()}
        for sched in self.schedules.values():
            sched.nowfun = self.now  # beat's clock: UTC, or the test's
        started = self.now()
        self.last_run: dict[str, datetime] = dict.fromkeys(self.entries, started)
        self.runs: Counter[str] = Counter()  # finished runs per task name
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> EmbeddedScheduler:
        self._thread = threading.Thread(target=self._loop, name="sliplink-beat", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def due(self) -> list[str]:
        """Run the entries due now (each on its own thread); returns their task names."""
        fired = []
        for name, sched in self.schedules.items():
            if sched.is_due(self.last_run[name]).is_due:
                self.last_run[name] = self.now()
                entry = self.entries[name]
                if self.run(entry["task"], entry.get("kwargs", {}), entry=name):
                    fired.append(entry["task"])
        return fired

    def run(self, task: str, kwargs: dict[str, Any] | None = None, *, entry: str = "") -> bool:
        """Start the job of ``task`` now unless the same entry's last run is still going;
        False when skipped."""
        entry = entry or task
        with self._lock:
            if entry in self._running or self._stop.is_set():
                return False
            self._running.add(entry)

        def go() -> None:
            try:
                self.jobs[task](**(kwargs or {}))
            except Exception:  # noqa: BLE001 - a scheduled job must not stop the schedule
                log.exception("scheduled job %s failed", task)
            finally:
                with self._lock:
                    self._running.discard(entry)
                    self.runs[task] += 1

        threading.Thread(target=go, name=f"sliplink-{entry}", daemon=True).start()
        return True

    def _loop(self) -> None:
        for task in self.at_start:
            self.run(task)
        while not self._stop.wait(self.tick_s):
            self.due()
