"""The fast paths of ingestion keep their meaning: one query checks a bet's shop and
customer, and a plain greyscale PNG upload is stored as sent instead of re-encoded."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, PngImagePlugin
from sqlmodel import select

from store.models import AuditEntry, Bet, CustomerStatus, SlipImage
from tests.conftest import auth
from tests.factories import make_customer, make_shop


def _bet(**overrides: object) -> dict[str, object]:
    return {"stake": 2.0, "legs": [{"sport": "Tennis", "selection": "A", "odds": 2.0}]} | overrides


def _nothing_written(session) -> bool:  # type: ignore[no-untyped-def]
    session.expire_all()
    return (
        not session.exec(select(Bet)).all()
        and not session.exec(select(AuditEntry).where(AuditEntry.action == "bet.create")).all()
    )


def test_bet_for_a_closed_or_unknown_customer_or_shop_is_refused(client, session):
    closed = make_customer(session, status=CustomerStatus.closed)
    resp = client.post("/bets", json=_bet(customer_id=closed.id))
    assert resp.status_code == 422 and "customer_id" in resp.json()["detail"]
    assert "closed" in resp.json()["detail"]
    resp = client.post("/bets", json=_bet(customer_id=closed.id + 100))
    assert resp.status_code == 404 and "customer_id" in resp.json()["detail"]
    shop = make_shop(session)
    resp = client.post("/bets", json=_bet(shop_id=shop.id + 100, customer_id=closed.id))
    assert resp.status_code == 404 and "shop_id" in resp.json()["detail"]
    assert _nothing_written(session)


def test_bet_with_shop_and_customer_is_stored_with_legs_and_audit(client, session, keys):
    shop, customer = make_shop(session), make_customer(session)
    resp = client.post("/bets", json=_bet(shop_id=shop.id, customer_id=customer.id))
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["shop_id"] == shop.id and body["customer_id"] == customer.id
    assert body["legs"][0]["id"] > 0 and body["legs"][0]["selection"] == "A"
    assert client.get(f"/bets/{body['id']}").json()["legs"] == body["legs"]
    # a shop key records bets for its own shop without naming it
    resp = client.post("/bets", json=_bet(), headers=auth(keys.shop(shop.id)))
    assert resp.status_code == 201 and resp.json()["shop_id"] == shop.id
    session.expire_all()
    audit = session.exec(select(AuditEntry).where(AuditEntry.action == "bet.create")).all()
    assert sorted(int(a.entity_id) for a in audit) == [body["id"], resp.json()["id"]]


def _png(img: Image.Image, **save: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **save)
    return buf.getvalue()


def _stored(client, session, data: bytes) -> bytes:  # type: ignore[no-untyped-def]
    bet = client.post("/bets", json=_bet()).json()
    resp = client.post(f"/bets/{bet['id']}/slip", files={"slip": ("s.png", data)})
    assert resp.status_code == 202, resp.text
    assert resp.json()["features"] is None and resp.json()["cluster_id"] is None
    session.expire_all()
    return session.get(SlipImage, resp.json()["id"]).png


def test_plain_greyscale_png_is_stored_as_sent(client, session):
    pixels = np.random.default_rng(3).integers(0, 256, (60, 80), dtype=np.uint8)
    data = _png(Image.fromarray(pixels, mode="L"), compress_level=9)
    # bytes after IEND change the upload's hash but not the image; they are not kept
    stored = _stored(client, session, data + b"trailer")
    assert stored == data


def test_other_pngs_are_re_encoded_to_the_decoded_greyscale(client, session):
    pixels = np.random.default_rng(4).integers(0, 256, (60, 80), dtype=np.uint8)
    grey = Image.fromarray(pixels, mode="L")
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "scanner 7")  # text chunks may carry EXIF: never trusted
    exif = Image.Exif()
    exif[0x0112] = 3  # rotate 180° to view
    cases = {
        "rgb": (_png(grey.convert("RGB")), pixels),
        "text chunk": (_png(grey, pnginfo=text), pixels),
        "exif orientation": (_png(grey, exif=exif), pixels[::-1, ::-1]),
        "sixteen bit": (_png(Image.fromarray(pixels.astype(np.uint16) * 257)), pixels),
    }
    for name, (data, expected) in cases.items():
        stored = _stored(client, session, data)
        assert stored != data, name
        back = Image.open(io.BytesIO(stored))
        assert back.mode == "L", name
        assert np.array_equal(np.asarray(back), expected), name


def test_only_plain_pngs_qualify_for_storing_as_sent():
    import struct
    import zlib

    from store.slips import _plain_grey_png_end

    data = _png(Image.new("L", (8, 6), 200))
    assert _plain_grey_png_end(data, (6, 8)) == len(data)
    assert _plain_grey_png_end(data, (8, 6)) is None  # other pixels than decoded
    assert _plain_grey_png_end(data[:-4], (6, 8)) is None  # IEND cut short

    def with_ihdr(**fields: int) -> bytes:
        ihdr = dict(zip(("depth", "colour", "interlace"), data[24:27], strict=True)) | fields
        body = data[16:24] + bytes([ihdr["depth"], ihdr["colour"], 0, 0, ihdr["interlace"]])
        crc = struct.pack(">I", zlib.crc32(b"IHDR" + body))
        return data[:16] + body + crc + data[33:]

    assert _plain_grey_png_end(with_ihdr(), (6, 8)) == len(data)
    assert _plain_grey_png_end(with_ihdr(interlace=1), (6, 8)) is None  # Adam7
    assert _plain_grey_png_end(with_ihdr(depth=16), (6, 8)) is None
    assert _plain_grey_png_end(with_ihdr(colour=4), (6, 8)) is None  # grey + alpha
