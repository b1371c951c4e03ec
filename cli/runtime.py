"""Wiring for long-running commands: migrate, pick in-process or Celery tasks, build the app."""

from __future__ import annotations

from fastapi import FastAPI

from store.db import migrate
from store.settings import Settings, get_settings


def make_pipeline(settings: Settings) -> object | None:
    """The slip pipeline: Celery when a broker is configured, an in-process pool otherwise."""
    import importlib.util

    if importlib.util.find_spec("workers.pipeline") is None:
        return None
    from workers.pipeline import pipeline_for

    return pipeline_for(settings)


def build_app(settings: Settings | None = None) -> FastAPI:
    from api.main import create_app

    settings = settings or get_settings()
    migrate(settings.effective_database_url)
    return create_app(settings, pipeline=make_pipeline(settings), freeze_gc=True)


def run_worker(*, queues: list[str], concurrency: int) -> None:
    from workers.app import run_worker as celery_worker

    celery_worker(queues=queues, concurrency=concurrency)
