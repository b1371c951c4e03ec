from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from api import ratelimit
from api.deps import AnyUser, SessionDep, SettingsDep, ShopUser
from store import clustering, slips
from store.errors import Invalid, TooLarge
from store.models import SlipPublic

router = APIRouter(tags=["slips"])

_UPLOAD_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["slip"],
                    "properties": {"slip": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}
# multipart framing around the file: boundaries, headers, the filename
_MULTIPART_SLACK = 64 * 1024


@router.post(
    "/bets/{bet_id}/slip",
    status_code=202,
    response_model=SlipPublic,
    openapi_extra=_UPLOAD_DOC,
    responses={200: {"description": "the same bytes were already stored: the existing slip"}},
)
async def upload_slip(
    bet_id: int,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    actor: ShopUser,
    replace: bool = Query(False, description="replace a different slip already on this bet"),
) -> Response:
    """Upload the scanned slip of a bet (multipart field ``slip``: JPEG, PNG or TIFF)."""
    window = request.app.state.rate_limits["uploads"]
    ratelimit.enforce(window, request, what="slip uploads")
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + _MULTIPART_SLACK:
        raise TooLarge(f"slip: request is {declared} bytes, over the limit of {limit}")
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise Invalid("slip: send the image as multipart/form-data with the field 'slip'")
    async with request.form(max_files=1, max_fields=10) as form:
        upload = form.get("slip")
        if not isinstance(upload, UploadFile):
            raise Invalid("slip: the multipart field 'slip' with an image file is required")
        data = await upload.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"slip: file is over the limit of {limit} bytes")
    slip, created = await run_in_threadpool(
        slips.store_slip, session=session, bet_id=bet_id, data=data, actor=actor,
        max_bytes=limit, max_pixels=settings.max_image_pixels, replace=replace,
    )  # fmt: skip
    if created:
        pipeline = getattr(request.app.state, "pipeline", None)
        if pipeline is not None:
            slip_id = slip.id
            slips.after_commit(session, lambda: pipeline.submit(slip_id))
    body = slips.slip_public(session=session, slip=slip, duplicate=not created, fresh=created)
    return JSONResponse(body.model_dump(mode="json"), status_code=202 if created else 200)


@router.get("/slips/{slip_id}", response_model=SlipPublic)
def get_slip(slip_id: int, session: SessionDep, actor: AnyUser) -> SlipPublic:
    slip = slips.get_slip(session=session, slip_id=slip_id, actor=actor)
    return slips.slip_public(session=session, slip=slip)


@router.get(
    "/slips/{slip_id}/image",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def get_slip_image(slip_id: int, session: SessionDep, actor: AnyUser) -> Response:
    slip = slips.get_slip(session=session, slip_id=slip_id, actor=actor)
    png = slips.slip_png(session=session, slip_id=slip.id)  # type: ignore[arg-type]
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/slips/{slip_id}/accounts")
def get_slip_accounts(
    slip_id: int,
    session: SessionDep,
    actor: AnyUser,
    k: int = Query(5, ge=1, le=50, description="accounts listed"),
    days: int = Query(180, ge=1, le=3650, description="accounts' bets placed in these days"),
) -> dict[str, object]:
    """The customer accounts whose slips this slip's handwriting most resembles, best first
    (accounts of 6+ usable slips; a known customer's slip counts in its own account; the
    accounts are re-read every 10 minutes): a shortlist for a reviewer, not a link.  On
    held-out writers the writer's own account was first for 0.80 of slips and in the top 5
    for 0.95 (624 accounts).  409 while the slip has no usable features."""
    slip = slips.get_slip(session=session, slip_id=slip_id, actor=actor)
    since = datetime.now(UTC) - timedelta(days=days)
    return clustering.likely_accounts_of_slip(
        session=session,
        slip_id=slip.id,  # type: ignore[arg-type]
        k=k,
        since=since,
    )
