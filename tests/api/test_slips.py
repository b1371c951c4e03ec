from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image
from sqlmodel import select

from store.models import AuditEntry, Slip, SlipImage
from tests.conftest import auth
from tests.factories import make_bet, make_shop, scan_bytes


def upload(client, bet_id, data, *, name="slip.png", **kw):
    return client.post(f"/bets/{bet_id}/slip", files={"slip": (name, data)}, **kw)


def stored_count(session) -> int:
    session.expire_all()
    return len(session.exec(select(Slip)).all())


def test_upload_stores_greyscale_png_and_is_idempotent(client, session):
    bet = make_bet(session)
    data = scan_bytes(seed=1, mode="RGB", fmt="JPEG")
    resp = upload(client, bet.id, data, name="slip.jpg")
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status"] == "pending" and body["bet_id"] == bet.id
    assert (body["width"], body["height"]) == (400, 300) and body["original_type"] == "JPEG"
    again = upload(client, bet.id, data, name="other-name.jpg")
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    assert again.json()["duplicate"] is True
    assert stored_count(session) == 1
    png = client.get(f"/slips/{body['id']}/image")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(png.content))
    assert img.mode == "L" and img.size == (400, 300)
    # the stored PNG holds exactly the upload's greyscale pixels
    assert np.array_equal(np.asarray(img), np.asarray(Image.open(io.BytesIO(data)).convert("L")))
    assert client.get(f"/slips/{body['id']}").json()["sha256"] == body["sha256"]
    assert client.get(f"/bets/{bet.id}").json()["slip_id"] == body["id"]


def test_sixteen_bit_tiff_multipage_and_exif_orientation(client, session):
    # 16-bit greyscale TIFF with two pages: the first page is kept, scaled to 8 bits
    page1 = Image.fromarray(np.full((20, 30), 60000, np.uint16))
    page2 = Image.fromarray(np.zeros((5, 5), np.uint16))
    buf = io.BytesIO()
    page1.save(buf, format="TIFF", save_all=True, append_images=[page2])
    bet = make_bet(session)
    resp = upload(client, bet.id, buf.getvalue(), name="scan.tif")
    assert resp.status_code == 202, resp.text
    assert (resp.json()["width"], resp.json()["height"]) == (30, 20)
    stored = Image.open(io.BytesIO(client.get(f"/slips/{resp.json()['id']}/image").content))
    assert np.asarray(stored).mean() == 233  # round(60000 / 65535 * 255)
    # EXIF orientation 6 (rotate 90° clockwise to view): width and height swap
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(np.full((10, 40), 200, np.uint8)).save(buf, format="JPEG", exif=exif)
    resp = upload(client, make_bet(session).id, buf.getvalue(), name="phone.jpg")
    assert (resp.json()["width"], resp.json()["height"]) == (10, 40)


def test_bad_uploads_are_refused_and_store_nothing(client, session, settings):
    bet = make_bet(session)
    cases = [
        (b"", 422, "empty"),
        (b"hello, I am text pretending to be a png\n" * 5, 415, "not a recognised image"),
        (scan_bytes(seed=2)[:200], 422, "corrupt"),
        (scan_bytes(seed=3, fmt="GIF"), 415, "GIF"),
    ]
    for data, status, words in cases:
        resp = upload(client, bet.id, data)
        assert resp.status_code == status, resp.text
        assert words in resp.json()["detail"], resp.text
        assert resp.json()["detail"].startswith("slip:")
    assert client.post(f"/bets/{bet.id}/slip", data={"other": "x"}).status_code == 422
    assert client.post(f"/bets/{bet.id}/slip", json={"slip": "x"}).status_code == 422
    assert upload(client, 9999, scan_bytes(seed=4)).status_code == 404
    assert stored_count(session) == 0


def _bomb_png(cols: int, rows: int) -> bytes:
    """A PNG whose header claims a huge image but whose data is tiny."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", cols, rows, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * 1000)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


def test_decompression_bomb_and_oversized_files_are_413(client, session, app):
    bet = make_bet(session)
    resp = upload(client, bet.id, _bomb_png(100_000, 100_000))
    assert resp.status_code == 413 and "pixels" in resp.json()["detail"]
    app.state.settings = app.state.settings.model_copy(update={"max_upload_bytes": 5000})
    resp = upload(client, bet.id, scan_bytes(seed=5, size=(400, 600)) + b"\0" * 6000)
    assert resp.status_code == 413, resp.text
    resp = upload(client, bet.id, b"\0" * 200_000)
    assert resp.status_code == 413 and "request" in resp.json()["detail"]
    assert stored_count(session) == 0


def test_a_different_image_conflicts_unless_replaced_and_audited(client, session):
    bet = make_bet(session)
    first = upload(client, bet.id, scan_bytes(seed=6)).json()
    resp = upload(client, bet.id, scan_bytes(seed=7))
    assert resp.status_code == 409 and "replace" in resp.json()["detail"]
    resp = upload(client, bet.id, scan_bytes(seed=7, size=(320, 500)), params={"replace": "true"})
    assert resp.status_code == 202 and resp.json()["id"] == first["id"]
    assert resp.json()["width"] == 500 and resp.json()["sha256"] != first["sha256"]
    session.expire_all()
    actions = [
        e.action for e in session.exec(select(AuditEntry).where(AuditEntry.entity == "slip"))
    ]
    assert actions == ["slip.upload", "slip.replace"]
    assert len(session.exec(select(SlipImage)).all()) == 1


def test_the_same_image_for_another_bet_is_a_conflict(client, session):
    data = scan_bytes(seed=8)
    assert upload(client, make_bet(session).id, data).status_code == 202
    resp = upload(client, make_bet(session).id, data)
    assert resp.status_code == 409 and "another bet" in resp.json()["detail"]
    assert stored_count(session) == 1


def test_shop_keys_upload_and_read_only_their_own_slips(client, session, keys):
    mine, other = make_shop(session), make_shop(session)
    own_bet, other_bet = make_bet(session, shop_id=mine.id), make_bet(session, shop_id=other.id)
    till = auth(keys.shop(mine.id))
    slip = upload(client, own_bet.id, scan_bytes(seed=9), headers=till).json()
    assert upload(client, other_bet.id, scan_bytes(seed=10), headers=till).status_code == 404
    theirs = upload(client, other_bet.id, scan_bytes(seed=11)).json()
    assert client.get(f"/slips/{slip['id']}/image", headers=till).status_code == 200
    assert client.get(f"/slips/{theirs['id']}", headers=till).status_code == 404
    assert client.get(f"/slips/{theirs['id']}/image", headers=till).status_code == 404
    assert client.get("/slips/424242").status_code == 404
    analyst = auth(keys.analyst)
    assert client.get(f"/slips/{theirs['id']}", headers=analyst).status_code == 200
