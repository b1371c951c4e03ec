"""GET /ui/slips/{id}/letters: two stored slips' letters compared for a person reviewing a
link (cv.glyphs), with the access rules of the review pages."""

from __future__ import annotations

import cv2
import numpy as np

from tests.conftest import REPO_ROOT, auth
from tests.factories import make_shop

SET = REPO_ROOT / "sample_slips" / "set"
BET = {"stake": 10, "legs": [{"sport": "Horse Racing", "selection": "Golden Arrow", "odds": 3.0}]}


def _stored(client, name: str) -> int:  # type: ignore[no-untyped-def]
    resp = client.post("/bets", json=BET)
    assert resp.status_code == 201, resp.text
    data = (SET / name).read_bytes()
    resp = client.post(
        f"/bets/{resp.json()['id']}/slip", files={"slip": (name, data, "image/jpeg")}
    )
    assert resp.status_code == 202, resp.text
    return int(resp.json()["id"])


def test_two_slips_of_one_writer_match_letter_for_letter(client, session, keys) -> None:
    # slips 21 and 22: writer w005 on two visits; 26: writer w006; 16: writer w004
    a, b, c, d = (_stored(client, f"slip_{n:05d}.jpg") for n in (21, 22, 26, 16))
    same = client.get(f"/ui/slips/{a}/letters", params={"other": b}, headers=auth(keys.analyst))
    assert same.status_code == 200, same.text
    body = same.json()
    assert (body["slip"], body["other"]) == (a, b) and min(body["glyphs"]) >= 10
    assert 5 <= len(body["pairs"]) <= 12
    sims = [p["similarity"] for p in body["pairs"]]
    assert sims == sorted(sims, reverse=True) and 0 < sims[-1] <= sims[0] <= 1
    # every pair's boxes lie on dark ink of their own slip
    images = {
        i: cv2.imread(str(SET / f"slip_{n:05d}.jpg"), cv2.IMREAD_GRAYSCALE)
        for i, n in ((a, 21), (b, 22))
    }
    for p in body["pairs"]:
        for slip_id, key in ((a, "slip"), (b, "other")):
            r0, c0, r1, c1 = p[key]
            img = images[slip_id]
            assert 0 <= r0 < r1 <= img.shape[0] and 0 <= c0 < c1 <= img.shape[1]
            assert int(np.min(img[r0:r1, c0:c1])) < 128
    # against different writers' real handwriting with as many letters: stands out
    assert body["different_writers_below"] >= 0.95
    for other in (c, d):
        got = client.get(f"/ui/slips/{a}/letters", params={"other": other}).json()
        assert got["score"] < body["score"], (other, got["score"], body["score"])
        assert got["different_writers_below"] < body["different_writers_below"]
    # ml reviews clusters too
    assert client.get(f"/ui/slips/{a}/letters", params={"other": b, "top": 3},
                      headers=auth(keys.ml)).json()["pairs"].__len__() == 3  # fmt: skip


def test_bad_requests_get_a_clear_error_and_a_till_none(client, session, keys) -> None:
    a, b = (_stored(client, f"slip_{n:05d}.jpg") for n in (21, 22))
    same = client.get(f"/ui/slips/{a}/letters", params={"other": a})
    assert same.status_code == 422 and "different slip" in same.json()["detail"]
    missing = client.get(f"/ui/slips/{a}/letters", params={"other": 99_999})
    assert missing.status_code == 404 and "99999" in missing.json()["detail"]
    assert client.get(f"/ui/slips/{a}/letters").status_code == 422  # other is required
    assert client.get(f"/ui/slips/{a}/letters", params={"other": b, "top": 0}).status_code == 422
    till = auth(keys.shop(make_shop(session).id))
    assert (
        client.get(f"/ui/slips/{a}/letters", params={"other": b}, headers=till).status_code == 403
    )


def test_the_review_caches_keep_results_by_digest_not_image_bytes() -> None:
    from api.routes.ui import _DigestCache

    cache, calls = _DigestCache(2), []

    def compute(name: str):  # type: ignore[no-untyped-def]
        def run() -> str:
            calls.append(name)
            return name.upper()

        return run

    assert cache.get("a", compute("a")) == "A" and cache.get("a", compute("a")) == "A"
    assert cache.get("b", compute("b")) == "B"
    cache.get("a", compute("a"))  # a is now the most recent: c pushes b out
    cache.get("c", compute("c"))
    assert cache.get("a", compute("a")) == "A" and cache.get("b", compute("b")) == "B"
    assert calls == ["a", "b", "c", "b"]
    assert list(cache._items) == ["a", "b"] and all(
        isinstance(v, str) for v in cache._items.values()
    )
