"""Embedding model versions: the registry, rollouts (activate / roll back without downtime)
and the evaluation report, as JSON for scripts and as pages of the web UI."""

from __future__ import annotations

import logging
import mimetypes
import threading
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from api.deps import AnyUser, SessionDep
from api.routes.ui import UISession, render
from store import models_registry as registry
from store.errors import Conflict, NotFound
from store.models import Role

log = logging.getLogger("sliplink.api.models")

router = APIRouter(tags=["models"])
ui_router = APIRouter(include_in_schema=False)


def _register_configured(request: Request, session: SessionDep) -> None:
    """The configured model is always listed (and can be rolled back to)."""
    from workers import model as worker_model

    worker_model.register_configured(session=session, settings=request.app.state.settings)


def _status(session: SessionDep) -> dict[str, Any]:
    r = registry.latest_rollout(session=session)
    if r is not None and r.state in ("running", "finishing"):
        registry.progress(session=session, rollout=r)
    return {
        "active": registry.serving_version(session=session) or None,
        "rollout": registry.rollout_public(r) if r is not None else None,
    }


@router.get("/models")
def list_models(request: Request, session: SessionDep, actor: AnyUser) -> list[dict[str, Any]]:
    """Every registered model version, newest first, with which one is active."""
    _register_configured(request, session)
    return registry.list_versions(session=session)


@router.get("/models/rollout")
def rollout_status(session: SessionDep, actor: AnyUser) -> dict[str, Any]:
    """The active version and the latest rollout with its progress."""
    return _status(session)


@router.post("/models/rollout/cancel")
def cancel_rollout(session: SessionDep, actor: AnyUser) -> dict[str, Any]:
    """Stop the running rollout; the active version stays."""
    return registry.rollout_public(registry.cancel_rollout(session=session, actor=actor.name))


@router.post("/models/rollback", status_code=202)
def rollback(request: Request, session: SessionDep, actor: AnyUser) -> dict[str, Any]:
    """Roll the previously active version out again."""
    previous = registry.previous_version(session=session)
    if previous is None:
        raise Conflict("no earlier version has been active")
    return _start(request, session, version=previous, actor=actor.name)


@router.get("/models/{version}")
def get_model(version: str, session: SessionDep, actor: AnyUser) -> dict[str, Any]:
    """A version's parameters, fitting data, evaluations, threshold, activations, drift."""
    row = registry.resolve(session=session, ref=version)
    return registry.detail(session=session, version=row.version)


@router.post("/models/{version}/activate", status_code=202)
def activate(version: str, request: Request, session: SessionDep, actor: AnyUser) -> dict[str, Any]:
    """Start the rollout of ``version``: the stored slips are re-embedded and re-clustered in
    the background; the active version serves until the new one is complete."""
    _register_configured(request, session)
    row = registry.resolve(session=session, ref=version)
    return _start(request, session, version=row.version, actor=actor.name)


@router.get("/models/{version}/report/{name}")
def report_file(version: str, name: str, session: SessionDep, actor: AnyUser) -> Response:
    """A file of the version's evaluation report (``index.html`` and its PNG plots)."""
    return _report_response(session, version, name)


def _report_response(session: SessionDep, version: str, name: str) -> Response:
    row = registry.resolve(session=session, ref=version)
    content = registry.report_file(session=session, version=row.version, name=name)
    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if media not in ("text/html", "image/png", "application/json"):
        raise NotFound(f"model {row.version} has no report file {name}")
    return Response(content, media_type=media)


def _start(request: Request, session: SessionDep, *, version: str, actor: str) -> dict[str, Any]:
    rollout, _ = registry.start_rollout(session=session, version=version, actor=actor)
    out = registry.rollout_public(rollout)
    pipeline = request.app.state.pipeline
    settings = request.app.state.settings
    from store.slips import after_commit

    if hasattr(pipeline, "send"):  # Celery: the workers do it
        after_commit(session, lambda: pipeline.send("sliplink.rollout_tick"))
    else:  # embedded: a background thread of this process
        after_commit(session, lambda: _run_in_thread(settings))
    return out


_inline_lock = threading.Lock()


def _run_in_thread(settings: Any) -> None:
    def run() -> None:
        from workers import rollout

        if not _inline_lock.acquire(blocking=False):
            return  # one is running: it carries on with the newest rollout
        try:
            rollout.run_inline(settings=settings)
        except Exception:  # noqa: BLE001 - recorded on the rollout; resumed by activating again
            log.exception("model rollout failed")
        finally:
            _inline_lock.release()

    threading.Thread(target=run, name="sliplink-rollout", daemon=True).start()


# ---------------------------------------------------------------- web UI pages
@ui_router.get("/ui/models", response_class=HTMLResponse)
def models_page(request: Request, session: SessionDep, user_session: UISession) -> Response:
    _register_configured(request, session)
    return render(
        request,
        "models.html",
        {
            "models": registry.list_versions(session=session),
            "status": _status(session),
            "can_activate": user_session.actor.has(Role.ml),
        },
    )


@ui_router.get("/ui/models/{version}", response_class=HTMLResponse)
def model_page(
    version: str, request: Request, session: SessionDep, user_session: UISession
) -> Response:
    row = registry.resolve(session=session, ref=version)
    info = registry.detail(session=session, version=row.version)
    return render(
        request,
        "model.html",
        {
            "m": info,
            "status": _status(session),
            "can_activate": user_session.actor.has(Role.ml),
        },
    )


@ui_router.get("/ui/models/{version}/report/{name}")
def model_report_page(
    version: str, name: str, session: SessionDep, user_session: UISession
) -> Response:
    return _report_response(session, version, name)
