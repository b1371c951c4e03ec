"""The worker decodes stored slip PNGs itself (Up-filtered ones) or with OpenCV; the pixels must
be Pillow's exactly."""

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


def test_up_filtered_pngs_are_decoded_without_opencv_to_the_same_pixels() -> None:
    """What uploads store (``store.slips._encode_png``) and ``encode_png`` writes (every row
    "Up"-filtered) is un-filtered here; random pixels make every row sum wrap modulo 256."""
    from store.slips import _encode_png
    from workers.pipeline import _up_filtered_png

    rng = np.random.default_rng(7)
    for shape in [(1, 1), (1, 9), (8, 1), (31, 17), (240, 333)]:
        grey = rng.integers(0, 256, shape, dtype=np.uint8)
        for png in (_encode_png(grey), encode_png(grey)):
            own = _up_filtered_png(png)
            assert own is not None and own.dtype == np.uint8 and own.flags.c_contiguous
            assert np.array_equal(own, grey)
            assert np.array_equal(_stored_png(png), decode_greyscale(png)[0])


def test_other_pngs_and_damaged_ones_are_left_to_opencv_or_decode_greyscale() -> None:
    from store.slips import _encode_png
    from workers.pipeline import _up_filtered_png

    grey = np.random.default_rng(3).integers(0, 256, (40, 50), dtype=np.uint8)
    pillow = io.BytesIO()
    Image.fromarray(grey).save(pillow, format="PNG")  # Pillow picks its own row filters
    assert _up_filtered_png(pillow.getvalue()) is None
    assert np.array_equal(_stored_png(pillow.getvalue()), grey)  # OpenCV decodes it
    png = bytearray(_encode_png(grey))
    png[60] ^= 0xFF  # inside the IDAT chunk: its CRC no longer matches
    assert _up_filtered_png(bytes(png)) is None
    assert _up_filtered_png(_encode_png(grey)[:-12]) is None  # no IEND
