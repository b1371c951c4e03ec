"""One handler renders domain errors as FastAPI's {"detail": ...} with their status."""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, OperationalError

from api.deps import Unauthenticated
from store.errors import DomainError

log = logging.getLogger("sliplink.api")
_BUG_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
                "Cache-Control": "no-store"}  # fmt: skip


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_request: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(Unauthenticated)
    async def _unauth(_request: Request, exc: Unauthenticated) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.detail}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )

    @app.exception_handler(DataError)
    @app.exception_handler(OverflowError)
    async def _out_of_range(_request: Request, exc: Exception) -> JSONResponse:
        # ids and amounts the database cannot hold (e.g. 2**70) are bad input, not a bug
        return JSONResponse(
            {"detail": "a number in the request is out of range for the database"},
            status_code=422,
        )

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        # A connection lost (a database restart, a failover) or a database that cannot be
        # reached or is busy is not a bug: the transaction did not commit (the pool has dropped
        # the dead connections), so the client should send the same request again.
        if not (exc.connection_invalidated or isinstance(exc, OperationalError)):
            return _bug_response(request)
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path,
                    type(exc.orig or exc).__name__)  # fmt: skip
        return JSONResponse(
            {"detail": "the database is unavailable (restarting or busy): the request did "
                       "not complete, send it again"},
            status_code=503,
            headers={**_BUG_HEADERS, "Retry-After": "1"},
        )  # fmt: skip

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        return _bug_response(request)

    install_validation(app)


def _bug_response(request: Request) -> JSONResponse:
    # a 500 always means a bug: log it in full, never leak a stack trace to the client
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    # answered outside the middlewares, so the safety headers are added here
    return JSONResponse({"detail": "internal error"}, status_code=500, headers=_BUG_HEADERS)


def _finite_json(value: object) -> object:
    """Validation errors echo the input; NaN and infinity are not JSON, so say them as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_json(v) for v in value]
    return value


def install_validation(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = _finite_json(jsonable_encoder(exc.errors()))
        return JSONResponse({"detail": detail}, status_code=422)
