from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from sqlmodel import Session
from starlette.datastructures import UploadFile

from api.deps import SessionDep, SettingsDep, ShopUser
from store.checks import CheckLimits, CheckResult, check_bet
from store.errors import Invalid, TooLarge
from store.models import BetCreate
from store.settings import Settings

if TYPE_CHECKING:
    from workers.identify import WriterIdentity

router = APIRouter(tags=["checks"])

_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/BetCreate"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["bet"],
                    "properties": {
                        "bet": {"type": "string", "description": "the bet as JSON"},
                        "slip": {"type": "string", "format": "binary"},
                    },
                }
            },
        },
    }
}


@router.post("/checks", openapi_extra=_DOC)
async def pre_acceptance_check(
    request: Request, session: SessionDep, settings: SettingsDep, actor: ShopUser
) -> dict[str, object]:
    """Accept, refer or reject a bet about to be taken, with the maximum acceptable stake and
    the reasons.  With a slip image (multipart ``slip``) the writer's cluster is identified
    and the linked accounts' factors and exclusions apply."""
    image_bytes = None
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=5) as form:
            raw = form.get("bet")
            upload = form.get("slip")
            if isinstance(upload, UploadFile):
                image_bytes = await upload.read(settings.max_upload_bytes + 1)
    else:
        raw = (await request.body()).decode("utf-8", "replace")
    if not isinstance(raw, str) or not raw:
        raise Invalid("bet: the bet is required (JSON body, or multipart field 'bet')")
    if image_bytes is not None and len(image_bytes) > settings.max_upload_bytes:
        raise TooLarge(f"slip: file is over the limit of {settings.max_upload_bytes} bytes")
    try:
        bet_in = BetCreate.model_validate(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise Invalid(f"bet: malformed JSON ({exc.msg} at position {exc.pos})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "bet"
        raise Invalid(f"bet.{where}: {first['msg']}") from None
    result, identity = await run_in_threadpool(
        _decide, session=session, settings=settings, bet_in=bet_in, image_bytes=image_bytes
    )
    partial = identity.partial_search if identity else None
    if partial:
        result.reasons.append(partial)
    return asdict(result) | {
        "slip_checked": identity is not None,
        "slip_usable": identity.usable if identity else None,
        "slip_matches": [asdict(m) for m in identity.matches] if identity else [],
        # "index" (every stored slip) or "recent" (index still loading: the newest only)
        "slip_search": (
            {"source": identity.search, "slips_searched": identity.searched}
            if identity and identity.usable
            else None
        ),
    }


def _decide(
    *, session: Session, settings: Settings, bet_in: BetCreate, image_bytes: bytes | None
) -> tuple[CheckResult, WriterIdentity | None]:
    """The writer (with a slip), the accounts whose factor applies, the decision: in one
    worker thread, since every hop to the thread pool waits for a core on a busy machine."""
    linked: list[int] = []
    identity = None
    if image_bytes is not None:
        from workers.identify import identify_writer  # the CV stack loads on the first slip

        identity = identify_writer(session=session, settings=settings, image_bytes=image_bytes)
        linked = list(identity.customer_ids)
    limits = CheckLimits(
        max_stake=settings.check_max_stake,
        max_potential_win=settings.check_max_potential_win,
        max_open_stake=settings.check_max_open_stake,
        max_selection_liability=settings.check_max_selection_liability,
    )
    result = check_bet(
        session=session,
        bet_in=bet_in,
        limits=limits,
        linked_customer_ids=linked,
        cluster_id=identity.cluster_id if identity else None,
        link_confidence=identity.confidence if identity else None,
        matched_bet_ids=[m.bet_id for m in identity.matches] if identity else [],
    )
    return result, identity
