"""The app factory: routers composed here, engine made once at start-up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors, privacy, ratelimit
from api.routes import (
    admin,
    bets,
    checks,
    clusters,
    customers,
    events,
    exclusions,
    exposure,
    factoring,
    feed,
    health,
    metrics,
    models,
    odds,
    reports,
    shops,
    slips,
    ui,
)
from store.db import get_engine
from store.settings import Settings, get_settings


def create_app(
    settings: Settings | None = None,
    *,
    pipeline: object | None = None,
    warm_index: bool | None = None,
) -> FastAPI:
    """Build the API.  ``pipeline`` receives slip ids to process after their upload commits
    (``submit(slip_id)``, ``ping()``); None means slips stay pending for a sweeper.
    ``warm_index`` (default: outside tests) starts building the handwriting index in the
    background when the server starts, so the first slip check does not build it."""
    settings = settings or get_settings()
    if warm_index is None:
        warm_index = settings.environment != "test"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if warm_index:
            _warm_index(app)
        yield

    app = FastAPI(
        title="sliplink",
        version="0.1.0",
        description="Bets, slips, handwriting clusters and risk alerts for betting operators.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = get_engine(settings.effective_database_url)
    app.state.pipeline = pipeline
    app.state.rate_limits = {
        "uploads": ratelimit.SlidingWindow(limit=settings.upload_rate_per_minute, seconds=60),
        "login": ratelimit.SlidingWindow(limit=settings.login_attempts_per_minute, seconds=60),
    }
    errors.install(app)
    app.add_middleware(privacy.MaskPersonalData)  # the ml role never sees personal data
    for module in (health, bets, slips, customers, shops, admin):
        app.include_router(module.router)
    for module in (events, exposure, factoring, checks, odds, exclusions, reports):  # bet lifecycle
        app.include_router(module.router)
    for module in (clusters, metrics):  # the pipeline's routes
        app.include_router(module.router)
    app.include_router(models.router)  # model registry and rollouts
    from api.routes import alerts, notifications  # alerts, cases, rules, feed, webhooks

    for module in (alerts, notifications):
        for router in module.ROUTERS:
            app.include_router(router)
    ui.install(app)  # web UI: static files, security headers, HTML error pages
    for module in (ui, feed):  # the web UI's pages and live feed
        app.include_router(module.router)
    app.include_router(models.ui_router)  # the model pages
    return app


def _warm_index(app: FastAPI) -> None:
    """Start the background build of the slip index (``/readyz`` shows its state)."""
    try:
        from workers.pipeline import warm_index_at_start
    except ImportError:  # an API-only install: slip checks are not served
        return
    warm_index_at_start(app.state.engine)
