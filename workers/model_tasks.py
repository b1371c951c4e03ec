"""Celery tasks of the model lifecycle: rollout ticks, re-embedding batches, the finishing
re-cluster + switch, and the weekly drift watch (``workers.rollout`` does the work)."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from workers import pipeline, rollout
from workers.app import _settings, app
from workers.config import PipelineConfig

log = logging.getLogger("sliplink.model_tasks")

_OPTIONS: dict[str, Any] = {"bind": True, "acks_late": True, "reject_on_worker_lost": True}


def _send(name: str, *args: Any, queue: str) -> None:
    try:
        app.send_task(name, args=list(args), queue=PipelineConfig.from_env().queue(queue))
    except Exception:  # noqa: BLE001 - the broker went away: the next tick re-sends it
        log.exception("could not enqueue %s", name)


def _send_batch(rollout_id: int, version: str, slip_ids: list[int]) -> None:
    _send("sliplink.reembed_batch", rollout_id, version, slip_ids, queue="extract")


@app.task(name="sliplink.rollout_tick", **_OPTIONS)
def rollout_tick(self: Task) -> dict[str, Any]:
    try:
        step = rollout.tick(settings=_settings(), send=_send_batch)
    except pipeline.TRANSIENT as exc:
        log.warning("rollout tick skipped: %s", exc)
        return {}
    if step.get("finish"):
        _send("sliplink.rollout_finish", step["rollout"], queue="assign")
    return step


@app.task(name="sliplink.reembed_batch", **_OPTIONS)
def reembed_batch(self: Task, rollout_id: int, version: str, slip_ids: list[int]) -> int:
    try:
        written = rollout.reembed_slips(settings=_settings(), version=version, slip_ids=slip_ids)
    except pipeline.TRANSIENT as exc:
        raise self.retry(exc=exc, countdown=pipeline.backoff(self.request.retries)) from exc
    # the batch that completes the version moves the rollout on without waiting for beat
    from sqlmodel import Session

    from store import models_registry
    from store.db import get_engine

    with Session(get_engine(_settings().effective_database_url)) as s:
        if not models_registry.missing_slips(session=s, version=version, limit=1):
            _send("sliplink.rollout_tick", queue="maintenance")
    return written


@app.task(name="sliplink.rollout_finish", **_OPTIONS)
def rollout_finish(self: Task, rollout_id: int) -> dict[str, Any]:
    try:
        result = rollout.finish(settings=_settings(), rollout_id=rollout_id)
    except pipeline.TRANSIENT as exc:
        raise self.retry(exc=exc, countdown=pipeline.backoff(self.request.retries)) from exc
    for trigger in result.pop("triggers", []):
        _send("sliplink.rules", trigger, queue="rules")
    if not result.get("switched"):
        _send("sliplink.rollout_tick", queue="maintenance")
    return result


@app.task(name="sliplink.drift", **_OPTIONS)
def drift(self: Task) -> dict[str, Any]:
    try:
        return rollout.check_drift(settings=_settings())
    except pipeline.TRANSIENT as exc:
        log.warning("drift watch skipped: %s", exc)
        return {}
