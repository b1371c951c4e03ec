"""Process-local task metrics (Prometheus): step durations observed where the steps run.

In the embedded default that is the API process, so ``/metrics`` shows them; Celery worker
processes keep their own copy (the database-derived latency gauges on ``/metrics`` cover
the distributed case).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

STEP_SECONDS = Histogram(
    "sliplink_task_duration_seconds",
    "Duration of pipeline steps in this process",
    ["step"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)


DROPPED = Counter(
    "sliplink_inprocess_dropped_tasks",
    "Tasks the in-process pipeline dropped because its backlog was full",
    ["queue"],
    registry=REGISTRY,
)


# steps timed in a child process of the in-process pipeline, handed back to the parent
_captured: list[tuple[str, float]] | None = None


def observe(step: str, seconds: float) -> None:
    if _captured is not None:
        _captured.append((step, seconds))
    STEP_SECONDS.labels(step=step).observe(seconds)


def capture() -> list[tuple[str, float]]:
    """Start recording this process's step timings (a pipeline child process calls it);
    the returned list fills as steps run."""
    global _captured
    _captured = []
    return _captured
