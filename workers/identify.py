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
from workers.pipeline import would_join


def identify_writer(
    *, session: Session, settings: Settings, image_bytes: bytes
) -> tuple[int, float, list[int]] | None:
    """(cluster id, confidence, customer ids) of the cluster the slip would join, or None."""
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
    found = would_join(
        session=session,
        model_version=version,
        vector=features.vector,
        threshold=models.threshold(model),
    )
    if found is None:
        return None
    cluster_id, confidence = found
    customers = clustering.cluster_customers(session=session, cluster_id=cluster_id)
    return cluster_id, confidence, sorted(customers)
