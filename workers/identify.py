"""Who wrote this slip? The counter check's question, answered without storing anything:
embed the image with the active model and ask the assignment index which cluster it would
join, and which customer accounts that cluster holds."""

from __future__ import annotations

from sqlmodel import Session

from cv.imageio import ImageError, decode_greyscale
from store import clustering
from store.errors import Invalid, TooLarge, UnsupportedImage
from store.settings import Settings
from workers import model as models
from workers.pipeline import _assigner


def identify_writer(
    *, session: Session, settings: Settings, image_bytes: bytes
) -> tuple[int, float, list[int]] | None:
    """(cluster id, confidence, customer ids) of the cluster the slip would join, or None."""
    from cv.cluster import assign_incremental

    try:
        image, _ = decode_greyscale(image_bytes, max_pixels=settings.max_image_pixels)
    except ImageError as exc:
        error = {"too_large": TooLarge, "unsupported": UnsupportedImage}.get(exc.kind, Invalid)
        raise error(f"slip: {exc}") from None
    version = models.ensure_active_model(session=session, settings=settings)
    model = models.model_for(version, session=session, settings=settings)
    features = models.extract(model, image)
    if not features.usable:
        return None
    assigner = _assigner(version)
    assigner.refresh(session, dim=int(features.vector.shape[0]))
    if assigner.index is None or len(assigner.index) == 0:
        return None
    found = assign_incremental(
        features.vector,
        index=assigner.index,
        slip_cluster=assigner.slip_cluster,
        threshold=models.threshold(model),
        cluster_sizes=assigner.sizes,
    )
    if found.cluster_id is None:
        return None
    customers = clustering.cluster_customers(session=session, cluster_id=found.cluster_id)
    return int(found.cluster_id), float(found.confidence), sorted(customers)
