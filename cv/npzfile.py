"""Model files: numpy arrays plus a JSON header in one ``.npz`` (no pickle)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["HEADER_KEY", "header_array", "read_with_header"]

HEADER_KEY = "header_json"


def header_array(header: dict[str, Any]) -> NDArray[np.uint8]:
    """The header as the uint8 array stored under :data:`HEADER_KEY`."""
    return np.frombuffer(json.dumps(header, sort_keys=True).encode(), np.uint8)


def read_with_header(
    path: str | os.PathLike, *, what: str
) -> tuple[dict[str, Any], dict[str, NDArray]]:
    """(header, arrays) of a model file; ValueError naming ``what``, the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:  # np.load raises several types for non-npz input
        raise ValueError(f"{what} {path} is not a sliplink model: {exc}") from exc
    if HEADER_KEY not in arrays:
        raise ValueError(f"{what} {path} has no header")
    header = json.loads(arrays.pop(HEADER_KEY).tobytes().decode())
    return header, arrays
