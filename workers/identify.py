"""Who wrote this slip? The counter check's question, answered without storing anything:
embed the image with the active model, ask the assignment index which cluster it would join
and which stored slips are nearest (a slip left on its own counts too), and which customer
accounts those slips' bets belong to (the cluster's accounts are looked up with the check's
other accounts).

Right after a start the index may still be building (in the background: 50-130 s at 200k
slips); a check then searches the newest stored slips exactly (``pipeline.RECENT_SLIPS``,
and those stored since) instead of waiting, and says so (``WriterIdentity.search``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from cv.imageio import ImageError, decode_greyscale
from store.errors import Invalid, TooLarge, UnsupportedImage
from store.models import Bet, Slip
from store.settings import Settings
from workers import model as models
from workers.pipeline import live_calibration, match_slip

# neighbours looked at: enough to see a writer's few earlier slips, cheap to search
NEIGHBOURS = 10


@dataclass(frozen=True)
class SlipNeighbour:
    """A stored slip whose handwriting matches, with the customer of its bet (None when the
    bet was anonymous)."""

    slip_id: int
    bet_id: int
    customer_id: int | None
    similarity: float
    cluster_id: int | None


@dataclass
class WriterIdentity:
    """The cluster the slip would join (its accounts are looked up with the check's other
    accounts, in one query: ``store.checks.writer_customers``), the matching stored slips
    and the customers of their bets."""

    cluster_id: int | None = None
    confidence: float | None = None
    usable: bool = True
    matches: list[SlipNeighbour] = field(default_factory=list)
    customer_ids: list[int] = field(default_factory=list)
    # "index": every stored slip searched; "recent": the index was still building, only
    # the ``searched`` newest slips were
    search: str = "index"
    searched: int | None = None

    @property
    def partial_search(self) -> str | None:
        """The reason to give when not every stored slip was searched."""
        if self.search != "recent":
            return None
        return (
            "slip: the handwriting index is still loading after a restart; only the "
            f"{self.searched} most recently stored slips were searched"
        )


def identify_writer(*, session: Session, settings: Settings, image_bytes: bytes) -> WriterIdentity:
    """The writer's cluster (if the slip would join one), the stored slips whose similarity
    clears the model's calibrated threshold, and the customers of those slips' bets."""
    try:
        image, _ = decode_greyscale(image_bytes, max_pixels=settings.max_image_pixels)
    except ImageError as exc:
        error = {"too_large": TooLarge, "unsupported": UnsupportedImage}.get(exc.kind, Invalid)
        raise error(f"slip: {exc}") from None
    version = models.ensure_active_model(session=session, settings=settings)
    model = models.model_for(version, session=session, settings=settings)
    features = models.extract(model, image)
    if not features.usable:
        return WriterIdentity(usable=False)
    calibration = live_calibration(model)
    found = match_slip(
        session=session,
        model_version=version,
        vector=features.vector,
        calibration=calibration,
        k=NEIGHBOURS,
    )
    # slip to slip: the stored slips the new one matches one to one, at the threshold the
    # assignment used: raised with the slips searched, since more stored slips bring more
    # look-alikes (cv.cluster.Calibration.for_collection)
    limit = calibration.pair_threshold if found.pair_threshold is None else found.pair_threshold
    # compared on the decision's own scores (normalised on the live points); a neighbour
    # the decision did not score was not among its closest
    close = [
        (sid, sim, cid)
        for sid, sim, cid in found.neighbours
        if found.scores.get(sid, float("-inf")) >= limit
    ]
    bets = _bets_of_slips(session, [sid for sid, _, _ in close])
    matches = [
        SlipNeighbour(sid, bets[sid][0], bets[sid][1], round(sim, 4), cid)
        for sid, sim, cid in close
        if sid in bets  # a slip deleted since the index saw it
    ]
    identity = WriterIdentity(matches=matches, search=found.source, searched=found.searched)
    if found.cluster is not None:
        identity.cluster_id, identity.confidence = found.cluster[0], round(found.cluster[1], 4)
    identity.customer_ids = sorted({m.customer_id for m in matches if m.customer_id is not None})
    return identity


# built once: building a statement costs more CPU than running this one
_BETS_OF_SLIPS = (
    select(Slip.id, Bet.id, Bet.customer_id)
    .join(Bet, col(Bet.id) == col(Slip.bet_id))
    .where(col(Slip.id).in_(bindparam("slip_ids", expanding=True)))
)


def _bets_of_slips(session: Session, slip_ids: list[int]) -> dict[int, tuple[int, int | None]]:
    """slip id -> (bet id, customer id) in one query."""
    if not slip_ids:
        return {}
    rows = session.exec(_BETS_OF_SLIPS, params={"slip_ids": slip_ids}).all()
    return {int(s): (int(b), c) for s, b, c in rows}  # type: ignore[arg-type]
