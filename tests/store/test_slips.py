from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from cv.imageio import decode_greyscale
from store.slips import _encode_png, _plain_grey_png_end


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (9, 1), (33, 65), (300, 401)])
def test_stored_png_encoding_keeps_every_pixel(shape) -> None:
    """The upload path's own PNG writer: Pillow, OpenCV and our decoder read back exactly
    the pixels (random ones: every row filter difference wraps around modulo 256), and the
    result is a plain greyscale PNG (a re-upload of it is stored as it is)."""
    rng = np.random.default_rng(sum(shape))
    grey = rng.integers(0, 256, shape, dtype=np.uint8)
    grey[:, : shape[1] // 2] = 255  # paper next to noise: long runs as on a scan
    png = _encode_png(grey)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), grey)
    cv = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(cv.reshape(shape), grey)
    assert np.array_equal(decode_greyscale(png)[0], grey)
    assert _plain_grey_png_end(png, shape) == len(png)
