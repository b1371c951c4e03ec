"""The worker decodes stored slip PNGs with OpenCV; the pixels must be Pillow's exactly."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from cv.imageio import decode_greyscale, encode_png
from tests.workers.conftest import slip_images
from workers.pipeline import _stored_png


def test_stored_png_pixels_match_decode_greyscale() -> None:
    for data in slip_images(3):
        grey, _ = decode_greyscale(data)
        png = encode_png(grey)
        fast = _stored_png(png)
        assert fast is not None
        assert fast.dtype == np.uint8 and fast.shape == grey.shape
        assert np.array_equal(fast, decode_greyscale(png)[0])


def test_anything_else_is_left_to_decode_greyscale() -> None:
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8)
    jpeg, rgb, grey16 = io.BytesIO(), io.BytesIO(), io.BytesIO()
    Image.fromarray(grey).save(jpeg, format="JPEG")
    Image.fromarray(np.dstack([grey] * 3)).save(rgb, format="PNG")
    Image.fromarray(grey.astype(np.uint16) * 256).save(grey16, format="PNG")
    assert _stored_png(jpeg.getvalue()) is None
    assert _stored_png(rgb.getvalue()) is None  # colour: decode_greyscale converts it
    assert _stored_png(grey16.getvalue()) is None
    assert _stored_png(encode_png(grey)[:40]) is None  # truncated
