"""Celery beat schedule: the sweeper and flow monitor often, the heavy jobs once a day."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

from workers.config import PipelineConfig


def beat_schedule(config: PipelineConfig) -> dict[str, dict[str, Any]]:
    return {
        "sweep": {
            "task": "sliplink.sweep",
            "schedule": config.sweep_every_s,
            "options": {"queue": config.queue("maintenance"), "expires": 60},
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
