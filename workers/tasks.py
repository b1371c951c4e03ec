"""Celery tasks: thin wrappers that take ids, run a pipeline stage and chain the next one.

Transient errors (database or broker connection lost) are retried with exponential backoff
and jitter; any other error marks the slip failed with its reason.  A message whose retries
ran out leaves the slip as it is, for the sweeper.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from workers import pipeline
from workers.app import _settings, app
from workers.config import PipelineConfig

log = logging.getLogger("sliplink.tasks")

_OPTIONS: dict[str, Any] = {"bind": True, "acks_late": True, "reject_on_worker_lost": True}


def _retry(task: Task, exc: BaseException) -> None:
    config = PipelineConfig.from_env()
    if task.request.retries >= config.max_retries:
        log.error(
            "%s: giving up after %d retries (%s); the sweeper will pick it up",
            task.name,
            task.request.retries,
            exc,
        )
        return
    raise task.retry(
        exc=exc, countdown=pipeline.backoff(task.request.retries), max_retries=config.max_retries
    )


def _send(name: str, *args: Any) -> None:
    try:
        app.send_task(name, args=list(args))
    except Exception:  # noqa: BLE001 - the broker went away: the sweeper re-enqueues it
        log.exception("could not enqueue %s%s", name, args)


@app.task(name="sliplink.extract", **_OPTIONS)
def extract(self: Task, slip_id: int, model_version: str | None = None) -> None:
    settings = _settings()
    try:
        outcome = pipeline.extract_stage(slip_id, model_version, settings)
    except pipeline.TRANSIENT as exc:
        _retry(self, exc)
        return
    except Exception as exc:  # noqa: BLE001 - a non-transient error fails the slip
        try:
            pipeline.mark_failed(slip_id, f"{type(exc).__name__}: {exc}", settings)
        except pipeline.TRANSIENT as again:
            _retry(self, again)
        return
    if outcome.extracted:
        _send("sliplink.assign", slip_id, outcome.model_version or model_version)


@app.task(name="sliplink.assign", **_OPTIONS)
def assign(self: Task, slip_id: int, model_version: str | None = None) -> None:
    try:
        outcome = pipeline.assign_stage(slip_id, model_version, _settings())
    except pipeline.TRANSIENT as exc:
        _retry(self, exc)
        return
    for trigger in outcome.triggers:
        _send("sliplink.rules", trigger)


@app.task(name="sliplink.rules", **_OPTIONS)
def rules(self: Task, trigger: dict[str, Any]) -> None:
    try:
        pipeline.rules_stage(trigger, _settings())
    except pipeline.TRANSIENT as exc:
        _retry(self, exc)


def _queue_depths() -> dict[str, int] | None:
    from workers.client import queue_depths

    with app.connection_for_read() as conn:
        return queue_depths(conn, PipelineConfig.from_env())


@app.task(name="sliplink.sweep", **_OPTIONS)
def sweep(self: Task, leases_only: bool = False) -> dict[str, int]:
    try:
        depths = None if leases_only else _queue_depths()
        result = pipeline.sweep(settings=_settings(), queue_depths=depths, leases_only=leases_only)
    except pipeline.TRANSIENT as exc:
        log.warning("sweep skipped: %s", exc)
        return {}
    _resend(result)
    if result.extract or result.assign or result.rules:
        log.info(
            "sweeper re-enqueued %d extract, %d assign, %d bet rules",
            len(result.extract),
            len(result.assign),
            len(result.rules),
        )
    return {
        "extract": len(result.extract),
        "assign": len(result.assign),
        "rules": len(result.rules),
    }


def _resend(result: pipeline.SweepResult) -> None:
    for sid in result.extract:
        _send("sliplink.extract", sid, None)
    for sid, version in result.assign:
        _send("sliplink.assign", sid, version)
    for trigger in result.rules:
        _send("sliplink.rules", trigger)


@app.task(name="sliplink.recluster", **_OPTIONS)
def recluster(self: Task) -> dict[str, int]:
    try:
        stats = pipeline.recluster(settings=_settings())
    except pipeline.TRANSIENT as exc:
        _retry(self, exc)
        return {}
    triggers = stats.pop("triggers")
    for trigger in triggers:
        _send("sliplink.rules", trigger)
    return stats


@app.task(name="sliplink.screening", **_OPTIONS)
def screening(self: Task) -> int:
    try:
        return pipeline.run_screening(settings=_settings())
    except pipeline.TRANSIENT as exc:
        _retry(self, exc)
        return 0


@app.task(name="sliplink.exclusions", **_OPTIONS)
def exclusions(self: Task) -> dict[str, int]:
    try:
        return pipeline.apply_exclusions_now(settings=_settings())
    except pipeline.TRANSIENT as exc:
        _retry(self, exc)
        return {}


@app.task(name="sliplink.purge", **_OPTIONS)
def purge(self: Task) -> int:
    try:
        return pipeline.purge_retention(settings=_settings())
    except pipeline.TRANSIENT as exc:
        _retry(self, exc)
        return 0


@app.task(name="sliplink.flow", **_OPTIONS)
def flow(self: Task) -> list[str]:
    try:
        return pipeline.monitor_flow(settings=_settings())
    except pipeline.TRANSIENT as exc:
        log.warning("flow monitor skipped: %s", exc)
        return []


@app.task(name="sliplink.reembed", **_OPTIONS)
def reembed(self: Task) -> int:
    """After a new model version is activated: enqueue extraction of every slip that has no
    embedding under it (the sweep does exactly that)."""
    result = pipeline.sweep(settings=_settings())
    for sid in result.extract:
        _send("sliplink.extract", sid, None)
    for trigger in result.rules:  # the sweep started their new grace period: send them now
        _send("sliplink.rules", trigger)
    return len(result.extract)
