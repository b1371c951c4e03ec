"""Property tests of the upload path with Hypothesis: whatever bytes arrive (random, real
images truncated or with bytes flipped, headers claiming billions of pixels, broken multipart
framing), the decoder either returns a greyscale image or says why not, and the real upload
endpoint answers below 500 and, when it refuses, stores nothing at all."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from sqlalchemy import func
from sqlmodel import select

from api.ratelimit import SlidingWindow
from cv.imageio import ACCEPTED_FORMATS, ImageError, decode_greyscale
from store.models import AuditEntry, Slip, SlipImage
from tests.conftest import auth
from tests.factories import make_bet, make_shop

MODES = {
    "PNG": ["L", "RGB", "RGBA", "LA", "P", "1", "I;16"],
    "JPEG": ["L", "RGB", "CMYK"],
    "TIFF": ["L", "RGB", "RGBA", "1", "I;16", "CMYK", "F"],
}
TIFF_COMPRESSION = [None, "tiff_lzw", "tiff_adobe_deflate", "packbits"]
MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"II*\x00", b"MM\x00*", b"GIF89a",
         b"BM", b"%PDF-1.4", b"RIFF\x00\x00\x00\x00WEBP"]  # fmt: skip
KINDS = {"corrupt", "unsupported", "too_large"}
PROPERTY = settings(max_examples=250, deadline=None, derandomize=True, database=None)
ENDPOINT = settings(max_examples=80, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])  # fmt: skip


# ---------------------------------------------------------------- payloads
@st.composite
def images(draw: st.DrawFn) -> tuple[bytes, str, tuple[int, int]]:
    """A real small image: (bytes, format, (rows, cols))."""
    fmt = draw(st.sampled_from(sorted(MODES)))
    mode = draw(st.sampled_from(MODES[fmt]))
    rows, cols = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65536, (rows, cols), dtype=np.uint16))
    else:
        img = Image.fromarray(rng.integers(0, 256, (rows, cols), dtype=np.uint8)).convert(mode)
    options: dict[str, object] = {}
    if fmt == "TIFF":
        options["compression"] = draw(st.sampled_from(TIFF_COMPRESSION))
        if draw(st.booleans()):  # multi-page: the first page counts
            options |= {"save_all": True, "append_images": [img.copy()]}
    if fmt == "JPEG":
        options["progressive"] = draw(st.booleans())
    if fmt in ("JPEG", "PNG") and draw(st.booleans()):
        exif = Image.Exif()
        exif[0x0112] = draw(st.sampled_from([0, 1, 3, 5, 6, 8, 9, 65535]))  # some invalid
        options["exif"] = exif.tobytes()
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue(), fmt, (rows, cols)


@st.composite
def damaged_images(draw: st.DrawFn) -> bytes:
    data, _, _ = draw(images())
    how = draw(st.sampled_from(["truncate", "flip", "splice", "drop"]))
    if how == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    at = draw(st.integers(0, len(data) - 1))
    if how == "flip":
        out = bytearray(data)
        for position in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8)):
            out[position] ^= draw(st.integers(1, 255))
        return bytes(out)
    if how == "splice":
        return data[:at] + draw(st.binary(min_size=1, max_size=64)) + data[at:]
    return data[:at] + data[at + draw(st.integers(1, 64)) :]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(cols: int, rows: int, idat: bytes = b"") -> bytes:
    header = struct.pack(">IIBBBBB", cols, rows, 8, 0, 0, 0, 0)
    pixels = idat or zlib.compress(b"\x00" * 64)
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + _chunk(b"IHDR", header) + _chunk(b"IDAT", pixels) + _chunk(b"IEND", b"")


def tiff_claiming(cols: int, rows: int) -> bytes:
    entries = [(256, 4, cols), (257, 4, rows), (258, 3, 8), (259, 3, 1), (262, 3, 1),
               (273, 4, 8 + 2 + 10 * 12 + 4), (277, 3, 1), (278, 4, rows),
               (279, 4, min(cols * rows, 2**32 - 1))]  # fmt: skip
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        ifd += struct.pack("<HHI", tag, kind, 1)
        ifd += struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + b"\x00" * 64


def jpeg_claiming(cols: int, rows: int) -> bytes:
    sof = struct.pack(">BHHB", 8, rows, cols, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xd9"


@st.composite
def bombs(draw: st.DrawFn) -> bytes:
    """Headers claiming more pixels than the limit (50 MP), with next to no data behind."""
    cols = draw(st.integers(7072, 65535))
    rows = draw(st.integers(max(1, 50_000_001 // cols + 1), 65535))
    maker = draw(st.sampled_from([png_claiming, tiff_claiming, jpeg_claiming]))
    return maker(cols, rows)


garbage = st.builds(lambda magic, tail: magic + tail, st.sampled_from(MAGIC),
                    st.binary(max_size=2048))  # fmt: skip
any_upload = st.one_of(images().map(lambda t: t[0]), damaged_images(), bombs(), garbage)


# ---------------------------------------------------------------- the decoder
def _decodes_or_says_why(data: bytes) -> np.ndarray | None:
    try:
        grey, fmt = decode_greyscale(data)
    except ImageError as exc:
        assert exc.kind in KINDS and str(exc)
        return None
    assert fmt in ACCEPTED_FORMATS
    assert grey.dtype == np.uint8 and grey.ndim == 2 and min(grey.shape) >= 1
    return grey


@PROPERTY
@given(images())
def test_real_images_decode_to_greyscale_of_their_size(image) -> None:  # type: ignore[no-untyped-def]
    data, fmt, (rows, cols) = image
    grey, got = decode_greyscale(data)
    assert got == fmt and grey.dtype == np.uint8
    assert grey.shape in ((rows, cols), (cols, rows))  # EXIF may turn it a quarter


@PROPERTY
@given(st.one_of(damaged_images(), garbage))
def test_damaged_and_garbage_bytes_decode_or_raise_image_error_only(data: bytes) -> None:
    _decodes_or_says_why(data)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(bombs())
def test_bombs_are_refused_from_the_header_without_decoding(data: bytes) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(ImageError) as refused:
            decode_greyscale(data, max_pixels=50_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.kind == "too_large"
    assert peak < 5_000_000  # bytes: not one row of a 50 MP image was allocated


def test_a_real_compressed_bomb_is_refused_before_inflating() -> None:
    # 8000 x 8000 zero pixels, 64 MB once inflated, about 60 kB on the wire
    rows = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * 8000
    idat = b"".join(rows.compress(row) for _ in range(8000)) + rows.flush()
    data = png_claiming(8000, 8000, idat)
    assert len(data) < 200_000
    with pytest.raises(ImageError) as refused:
        decode_greyscale(data, max_pixels=50_000_000)
    assert refused.value.kind == "too_large"


# ---------------------------------------------------------------- the upload endpoint
def _stored(session) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    session.expire_all()
    return tuple(  # type: ignore[return-value]
        session.exec(select(func.count()).select_from(table)).one()
        for table in (Slip, SlipImage, AuditEntry)
    )


@pytest.fixture
def till(app, session, keys):  # type: ignore[no-untyped-def]
    """A shop key and its shop; the upload rate limit lifted for the many examples."""
    app.state.rate_limits["uploads"] = SlidingWindow(limit=10**6, seconds=60)
    shop = make_shop(session)
    return shop.id, auth(keys.shop(shop.id))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_upload_endpoint_never_fails_and_refusals_store_nothing(client, session, till) -> None:
    shop_id, headers = till
    outcomes: dict[int, int] = {}

    @ENDPOINT
    @given(any_upload, st.sampled_from(["slip.png", "slip.jpg", "scan.tif", "x", "a.txt"]))
    def upload(data: bytes, filename: str) -> None:
        bet = make_bet(session, shop_id=shop_id)
        before = _stored(session)
        resp = client.post(f"/bets/{bet.id}/slip", files={"slip": (filename, data)},
                           headers=headers)  # fmt: skip
        outcomes[resp.status_code] = outcomes.get(resp.status_code, 0) + 1
        assert resp.status_code < 500, resp.text
        assert isinstance(resp.json()["detail" if resp.status_code >= 400 else "id"], str | int)
        if resp.status_code >= 400:
            assert _stored(session) == before, resp.text
        else:
            slip = resp.json()
            png = client.get(f"/slips/{slip['id']}/image", headers=headers)
            stored = Image.open(io.BytesIO(png.content))
            assert stored.mode == "L" and stored.size == (slip["width"], slip["height"])

    upload()
    # the strategies reached both outcomes: stored images and refusals of several kinds
    assert outcomes.get(202, 0) >= 5, outcomes
    assert len([s for s in outcomes if 400 <= s < 500]) >= 2, outcomes


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_broken_multipart_framing_is_refused_and_stores_nothing(client, session, till) -> None:
    shop_id, headers = till
    bet = make_bet(session, shop_id=shop_id)
    boundary = "sliplinkboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"slip\"; "
            f"filename=\"s.png\"\r\nContent-Type: image/png\r\n\r\n").encode()  # fmt: skip
    whole = body + png_claiming(10, 10) + f"\r\n--{boundary}--\r\n".encode()
    before = _stored(session)

    @ENDPOINT
    @given(st.integers(0, len(whole) - 1), st.binary(max_size=64))
    def post(cut: int, tail: bytes) -> None:
        resp = client.post(f"/bets/{bet.id}/slip", content=whole[:cut] + tail,
                           headers=headers | {"Content-Type": f"multipart/form-data; "
                                                              f"boundary={boundary}"})  # fmt: skip
        assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
        assert _stored(session) == before

    post()
