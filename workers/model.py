"""Adapters to the CV core: the embedding model (loaded once per process) and clustering.

The pipeline calls the CV code only through these functions, so the steps stay readable and
the CV interfaces are named in one place.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlmodel import Session

from store import clustering
from store.settings import Settings

log = logging.getLogger(__name__)

_lock = threading.Lock()
_models: dict[str, Any] = {}  # version -> EmbeddingModel, loaded once per process


@dataclass(frozen=True)
class Features:
    vector: NDArray[np.float32]
    usable: bool
    quality: dict[str, Any] = field(default_factory=dict)


def _load(path: Path | None) -> Any:
    from cv.embed import EmbeddingModel, load_default_model

    return EmbeddingModel.load(path) if path is not None else load_default_model()


def configured_model(settings: Settings) -> Any:
    """The model named by the settings (``model_path``) or the shipped default."""
    key = f"path:{settings.model_path}"
    with _lock:
        if key not in _models:
            model = _load(settings.model_path)
            _models[key] = _models.setdefault(model.version, model)
        return _models[key]


def ensure_active_model(*, session: Session, settings: Settings) -> str:
    """The active model version.

    The configured model (``model_path`` or the shipped default) is activated when nothing
    is active yet, or when it differs from an active model that was itself the configured
    one (a new shipped model after an upgrade, or a new ``SLIPLINK_MODEL_PATH``).  A model
    activated from an explicit file (``models activate``) stays until the next activation.
    Activating a new version makes the sweeper re-embed every slip under it.
    """
    row = clustering.active_model(session=session)
    model = configured_model(settings)
    path = str(settings.model_path) if settings.model_path else None
    if row is None or (row.version != model.version and (row.path is None or path is not None)):
        clustering.activate_model(session=session, version=model.version, path=path)
        return str(model.version)
    return row.version


def model_for(version: str, *, session: Session, settings: Settings) -> Any:
    """The loaded model of ``version``: the configured one, or the activated file."""
    with _lock:
        if version in _models:
            return _models[version]
    model = configured_model(settings)
    if model.version == version:
        return model
    row = clustering.active_model(session=session)
    if row is None or row.version != version or not row.path:
        raise LookupError(f"model version {version} is not loadable in this process")
    loaded = _load(Path(row.path))
    with _lock:
        return _models.setdefault(loaded.version, loaded)


def extract(model: Any, image: NDArray[np.uint8]) -> Features:
    """Preprocess + embed one greyscale slip (``cv.embed``), keeping the quality flags."""
    raw = model.extract(image)
    vector = model.transform_raw([raw])[0]
    return Features(
        vector=np.asarray(vector, dtype=np.float32),
        usable=bool(raw.ok),
        quality={"flags": list(raw.flags)},
    )


def threshold(model: Any) -> float:
    """The model's calibrated cosine threshold, else the clusterer's default."""
    from cv.cluster import DEFAULT_THRESHOLD

    value = getattr(model, "threshold_", None)
    return float(value) if value is not None else float(DEFAULT_THRESHOLD)
