"""Slip uploads: decode to greyscale, store as PNG, deduplicate on SHA-256 of the upload."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from cv.imageio import ImageError, decode_greyscale, encode_png
from store import audit, clustering
from store.access import Actor
from store.bets import get_bet
from store.errors import Conflict, Invalid, NotFound, TooLarge, UnsupportedImage
from store.models import Role, Slip, SlipImage, SlipPublic, SlipStatus, utcnow


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the session's transaction has committed (e.g. enqueue a task)."""
    session.info.setdefault("after_commit", []).append(callback)


def store_slip(
    *,
    session: Session,
    bet_id: int,
    data: bytes,
    actor: Actor,
    max_bytes: int,
    max_pixels: int,
    replace: bool = False,
) -> tuple[Slip, bool]:
    """Store an uploaded scan for a bet.

    Returns ``(slip, created)``; ``created`` is False when the same bytes were already stored
    for this bet (an idempotent re-upload).  Nothing is written when it raises.
    """
    bet = get_bet(session=session, bet_id=bet_id, actor=actor)
    if len(data) > max_bytes:
        raise TooLarge(f"slip: file is {len(data)} bytes, over the limit of {max_bytes}")
    digest = hashlib.sha256(data).hexdigest()
    same = session.exec(select(Slip).where(Slip.sha256 == digest)).first()
    if same is not None:
        if same.bet_id == bet.id:
            return same, False
        raise Conflict(
            f"slip: this image is already stored as slip {same.id} for another bet"
            + ("" if actor.role == Role.shop else f" (bet {same.bet_id})")
        )
    current = session.exec(select(Slip).where(Slip.bet_id == bet.id)).first()
    if current is not None and not replace:
        raise Conflict(
            f"slip: bet {bet.id} already has a different slip ({current.id}); "
            "pass replace=true to replace it"
        )
    try:
        grey, fmt = decode_greyscale(data, max_pixels=max_pixels)
    except ImageError as exc:
        if exc.kind == "too_large":
            raise TooLarge(f"slip: {exc}") from None
        if exc.kind == "unsupported":
            raise UnsupportedImage(f"slip: {exc}") from None
        raise Invalid(f"slip: {exc}") from None
    png = encode_png(grey)
    rows, cols = grey.shape
    if current is not None:
        before = {"sha256": current.sha256, "width": current.width, "height": current.height}
        current.sha256, current.width, current.height = digest, cols, rows
        current.original_type, current.uploaded_by = fmt, actor.name
        current.uploaded_at = current.updated_at = utcnow()
        current.status, current.error, current.attempts = SlipStatus.pending, None, 0
        image = session.get(SlipImage, current.id)
        if image is None:
            session.add(SlipImage(slip_id=current.id, png=png))  # type: ignore[arg-type]
        else:
            image.png = png
            session.add(image)
        session.add(current)
        # the old image's embeddings and memberships describe another image: drop them
        clustering.reset_slip(session, current.id)  # type: ignore[arg-type]
        audit.record(session, actor=actor.name, action="slip.replace", entity="slip",
                     entity_id=current.id, before=before,
                     after={"sha256": digest, "width": cols, "height": rows})  # fmt: skip
        session.flush()
        return current, True
    slip = Slip(
        bet_id=bet.id,  # type: ignore[arg-type]
        sha256=digest,
        width=cols,
        height=rows,
        original_type=fmt,
        uploaded_by=actor.name,
    )
    try:
        with session.begin_nested():
            session.add(slip)
            session.flush()
            session.add(SlipImage(slip_id=slip.id, png=png))  # type: ignore[arg-type]
            session.flush()
    except IntegrityError:
        # a concurrent upload of the same bytes or for the same bet won the race
        session.expunge_all()
        again = session.exec(select(Slip).where(Slip.sha256 == digest)).first()
        if again is not None and again.bet_id == bet.id:
            return again, False
        raise Conflict(f"slip: bet {bet.id} received another slip at the same time") from None
    audit.record(session, actor=actor.name, action="slip.upload", entity="slip",
                 entity_id=slip.id, after={"bet_id": bet.id, "sha256": digest,
                                           "width": cols, "height": rows})  # fmt: skip
    return slip, True


def get_slip(*, session: Session, slip_id: int, actor: Actor) -> Slip:
    slip = session.get(Slip, slip_id)
    if slip is None:
        raise NotFound(f"slip {slip_id} not found")
    get_bet(session=session, bet_id=slip.bet_id, actor=actor)  # shop scoping
    return slip


def slip_png(*, session: Session, slip_id: int) -> bytes:
    image = session.get(SlipImage, slip_id)
    if image is None:
        raise NotFound(f"slip {slip_id} has no stored image")
    return image.png


def slip_public(*, session: Session, slip: Slip, duplicate: bool = False) -> SlipPublic:
    extra: dict[str, object] = {"duplicate": duplicate}
    extra.update(clustering.slip_features(session=session, slip_id=slip.id))  # type: ignore[arg-type]
    return SlipPublic.model_validate(slip, update=extra)
