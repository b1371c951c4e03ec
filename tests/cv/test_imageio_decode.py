"""cv.imageio's OpenCV fast path decodes to exactly what Pillow decodes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cv import imageio


def _grey() -> np.ndarray:
    rng = np.random.default_rng(3)
    img = np.full((203, 311), 235, np.uint8)
    img[40:160:7] = rng.integers(0, 120, (18, 311), dtype=np.uint8)
    return np.clip(img.astype(int) + rng.integers(-9, 9, img.shape), 0, 255).astype(np.uint8)


def _saved(arr: np.ndarray, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **kw)
    return buf.getvalue()


def _pillow(data: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    return np.asarray(img.convert("L"), dtype=np.uint8)


@pytest.mark.parametrize(
    "kw",
    [
        {"format": "JPEG"},
        {"format": "JPEG", "quality": 40, "progressive": True},
        {"format": "JPEG", "optimize": True},
        {"format": "PNG"},
        {"format": "PNG", "optimize": True},
    ],
)
def test_fast_path_matches_pillow(kw: dict[str, object]) -> None:
    opts = dict(kw)
    fmt = str(opts.pop("format"))
    data = _saved(_grey(), fmt, **opts)
    img = Image.open(io.BytesIO(data))
    assert imageio._opencv_decode(data, img, str(img.format)) is not None
    out, found = imageio.decode_greyscale(data)
    assert found == fmt
    np.testing.assert_array_equal(out, _pillow(data))


def test_stored_png_takes_fast_path() -> None:
    data = imageio.encode_png(_grey())
    img = Image.open(io.BytesIO(data))
    assert imageio._opencv_decode(data, img, "PNG") is not None
    np.testing.assert_array_equal(imageio.decode_greyscale(data)[0], _grey())


def test_rotated_jpeg_left_to_pillow() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _saved(_grey(), "JPEG", exif=exif.tobytes())
    img = Image.open(io.BytesIO(data))
    assert imageio._opencv_decode(data, img, "JPEG") is None
    assert imageio.decode_greyscale(data)[0].shape == (311, 203)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file_still_refused(fmt: str) -> None:
    data = _saved(_grey(), fmt)
    with pytest.raises(imageio.ImageError) as err:
        imageio.decode_greyscale(data[: len(data) // 2])
    assert err.value.kind == "corrupt"
