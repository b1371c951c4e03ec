"""The app factory: routers composed here, engine made once at start-up."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors, permissions, privacy, ratelimit
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
from store.db import get_engine, warm_pool
from store.settings import Settings, get_settings

log = logging.getLogger("sliplink.api")


def create_app(
    settings: Settings | None = None,
    *,
    pipeline: object | None = None,
    warm_index: bool | None = None,
    freeze_gc: bool = False,
) -> FastAPI:
    """Build the API.  ``pipeline`` receives slip ids to process after their upload commits
    (``submit(slip_id)``, ``ping()``); None means slips stay pending for a sweeper.
    ``warm_index`` (default: outside tests) starts building the handwriting index in the
    background when the server starts, so the first slip check does not build it.
    ``freeze_gc`` (the server's processes: ``cli.runtime.build_app``): once started, the
    objects made so far leave the garbage collector's scans (``gc.freeze``)."""
    settings = settings or get_settings()
    if warm_index is None:
        warm_index = settings.environment != "test"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _warm_up(app)
        if freeze_gc:
            # the modules, routes and app made at start live as long as the process; a full
            # collection scanned all ~170k of them, ~90-160 ms with every request on the
            # worker stopped, several times in a server's first minute of traffic
            # (2026-12-06, bench/ingest.py: the paced phase's mid-run stalls).  Garbage made
            # at start is collected first, as frozen objects are never collected
            gc.collect()
            gc.freeze()
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


def _warm_up(app: FastAPI) -> None:
    """Do before the first request what it would otherwise pay for: each uvicorn worker
    answered its first requests ~0.3-0.6 s late (2026-12-06, bench/ingest.py --timeline),
    a tail of hundreds of ms on the first second of traffic.  Runs before the worker
    accepts connections."""
    # the access table's map of route templates: ~250 ms of CPU on the event loop (FastAPI
    # rebuilds every route's dependencies to list them), which stalled every request on the
    # worker behind the first authenticated one
    app.state.route_templates = permissions.route_templates(app)
    # the pooled connections a burst of POST /bets uses at once (PostgreSQL: ~5 ms each)
    try:
        warm_pool(app.state.engine, bets.WRITER_THREADS)
    except Exception as exc:  # noqa: BLE001 - start anyway: /readyz reports the database
        log.warning("database not reachable at start-up: %s", exc)
    # the broker connection the first publish would open (~80 ms)
    warm = getattr(app.state.pipeline, "warm", None)
    if warm is not None:
        warm()


def _warm_index(app: FastAPI) -> None:
    """Start the background build of the slip index (``/readyz`` shows its state)."""
    try:
        from workers.pipeline import warm_index_at_start
    except ImportError:  # an API-only install: slip checks are not served
        return
    warm_index_at_start(app.state.engine)
