from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """The database (and the broker, when one is configured) answer; ``index`` tells
    whether this process's handwriting index is built (``warm``) or still ``building``."""
    checks: dict[str, str] = {}
    try:
        with request.app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - readiness reports any failure as not ready
        checks["database"] = f"error: {type(exc).__name__}"
    pipeline = getattr(request.app.state, "pipeline", None)
    if pipeline is not None:
        checks["broker"] = pipeline.ping()
    ready = all(v == "ok" for v in checks.values())
    body: dict[str, object] = {"ready": ready, "checks": checks}
    # informational, not a readiness criterion: while the handwriting index builds (50-130 s
    # at 200k slips) slip checks answer from the newest slips and say so, so the instance
    # can take traffic
    body["index"] = _index_status(request.app.state.engine)
    return JSONResponse(body, status_code=200 if ready else 503)


def _index_status(engine: object) -> dict[str, object]:
    try:
        from workers.pipeline import index_status
    except ImportError:  # an API-only install: no pipeline, no index
        return {"state": "none"}
    status = index_status(engine)
    # a public probe: the state and how long a build has run, no counts or error texts
    return {k: v for k, v in status.items() if k in ("state", "seconds")}
