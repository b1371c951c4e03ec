"""Small synthetic ink images shared by the feature-family tests."""

from __future__ import annotations

import cv2
import numpy as np


def square_ink(side: int = 21, pad: int = 6) -> np.ndarray:
    """A filled square of ink (255) on a blank border."""
    img = np.zeros((side + 2 * pad, side + 2 * pad), np.uint8)
    img[pad : pad + side, pad : pad + side] = 255
    return img


def scribble_ink(seed: int = 0, width: int = 3) -> np.ndarray:
    """A random polyline of ink (255), the same for the same seed."""
    rng = np.random.default_rng(seed)
    img = np.zeros((80, 200), np.uint8)
    pts = np.cumsum(rng.integers(-8, 9, size=(40, 2)), axis=0) + [100, 40]
    pts = np.clip(pts, 5, [194, 74]).astype(np.int32)
    cv2.polylines(img, [pts], False, 255, width)
    return img
