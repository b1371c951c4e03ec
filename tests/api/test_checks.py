"""The counter check with a slip image: the writer is found among the stored slips, even a
slip the clusterer left on its own, and the matched customer's status applies."""

from __future__ import annotations

import json

import cv2
from sqlmodel import select

from store.clustering import ClusterMember
from tests.api.test_slips import _bomb_png
from tests.conftest import REPO_ROOT, auth
from tests.factories import make_customer, make_shop
from workers import pipeline

SET = REPO_ROOT / "sample_slips" / "set"
# a stored slip of writer w003, a second scan of that paper slip (what a counter check
# sees when the writer brings the same hand again: the pair threshold is calibrated at
# precision 0.98, where different slips of one writer rarely pass), and a slip of writer
# w004 (cosine far below the threshold)
STORED, SAME_HAND, OTHER_HAND = "slip_00014.jpg", "rescan_00014.jpg", "slip_00016.jpg"


def _image_bytes(name: str) -> bytes:
    if name != SAME_HAND:
        return (SET / name).read_bytes()
    # re-scanned: turned by 0.6 degrees, slightly darker, JPEG at another quality
    grey = cv2.imread(str(SET / STORED), cv2.IMREAD_GRAYSCALE)
    rows, cols = grey.shape
    turn = cv2.getRotationMatrix2D((cols / 2, rows / 2), 0.6, 1.0)
    grey = cv2.warpAffine(grey, turn, (cols, rows), borderMode=cv2.BORDER_REPLICATE)
    grey = cv2.convertScaleAbs(grey, alpha=0.95)
    ok, buf = cv2.imencode(".jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return buf.tobytes()


BET = {"stake": 10, "legs": [{"sport": "Horse Racing", "selection": "Golden Arrow", "odds": 3.0}]}


def _stored_slip(
    client, settings, *, customer_id: int | None, stake: float = 10, image: str = STORED
) -> int:
    """A bet with its slip, run through the real extract and assign stages."""
    resp = client.post("/bets", json=BET | {"customer_id": customer_id, "stake": stake})
    assert resp.status_code == 201, resp.text
    bet_id = resp.json()["id"]
    data = _image_bytes(image)
    resp = client.post(f"/bets/{bet_id}/slip", files={"slip": (image, data, "image/jpeg")})
    assert resp.status_code == 202, resp.text
    slip_id = resp.json()["id"]
    assert pipeline.extract_stage(slip_id, None, settings).extracted
    pipeline.assign_stage(slip_id, None, settings)
    return slip_id


def _check(client, till, image_name: str | None, **bet):  # type: ignore[no-untyped-def]
    if image_name is None:
        resp = client.post("/checks", json=BET | bet, headers=till)
    else:
        image = _image_bytes(image_name)
        resp = client.post(
            "/checks",
            data={"bet": json.dumps(BET | bet)},
            files={"slip": (image_name, image, "image/jpeg")},
            headers=till,
        )
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_a_slip_left_on_its_own_still_identifies_its_writer(client, session, settings, keys):
    excluded = make_customer(session, status="self_excluded")
    slip_id = _stored_slip(client, settings, customer_id=excluded.id)
    # one slip of the writer: the clusterer leaves it on its own, so no cluster can answer
    member = session.exec(select(ClusterMember).where(ClusterMember.slip_id == slip_id)).one()
    assert member.cluster_id is None
    till = auth(keys.shop(make_shop(session).id))

    same = _check(client, till, SAME_HAND)
    assert same["slip_checked"] and same["slip_usable"] and same["cluster_id"] is None
    [match] = same["slip_matches"]
    assert (match["slip_id"], match["customer_id"], match["cluster_id"]) == (
        slip_id,
        excluded.id,
        None,
    )
    assert 0.74 < match["similarity"] <= 1.0
    assert same["customer_ids"] == [excluded.id]
    assert same["decision"] == "reject" and same["max_stake"] == 0
    assert "(handwriting match) is self-excluded" in same["reasons"][0]

    other = _check(client, till, OTHER_HAND)
    assert (other["decision"], other["slip_matches"], other["customer_ids"]) == ("accept", [], [])
    plain = _check(client, till, None)
    assert plain["decision"] == "accept" and plain["slip_checked"] is False
    # the checks wrote nothing: still one membership, the stored slip's
    assert len(session.exec(select(ClusterMember)).all()) == 1


def test_a_factored_writer_under_another_name_gets_the_factor(client, session, settings, keys):
    factored = make_customer(session, stake_factor=0.1)
    stranger = make_customer(session)
    _stored_slip(client, settings, customer_id=factored.id)
    till = auth(keys.shop(make_shop(session).id))
    got = _check(client, till, SAME_HAND, customer_id=stranger.id, stake=80)
    assert got["customer_ids"] == [stranger.id, factored.id]
    assert (got["decision"], got["max_stake"], got["stake_factor"]) == ("refer", 50.0, 0.1)
    assert "over the maximum 50.00 (stake factor 0.1)" in got["reasons"][0]


def test_an_anonymous_writers_open_stakes_count_through_the_match(client, session, settings, keys):
    # house limit on open stakes: 2,000; the writer already has 1,900 open, anonymously
    slip_id = _stored_slip(client, settings, customer_id=None, stake=1900)
    till = auth(keys.shop(make_shop(session).id))
    same = _check(client, till, SAME_HAND, stake=200)
    assert [m["slip_id"] for m in same["slip_matches"]] == [slip_id]
    assert same["customer_ids"] == [] and same["decision"] == "refer"
    assert same["reasons"] == ["open stakes 1900.00 + 200.00 would pass the limit 2000.00"]
    other = _check(client, till, OTHER_HAND, stake=200)
    assert (other["decision"], other["reasons"]) == ("accept", [])
    # a second slip of the hand: the two now form a cluster, whose open stakes count
    _stored_slip(client, settings, customer_id=None, stake=50, image=SAME_HAND)
    again = _check(client, till, SAME_HAND, stake=60)
    assert again["cluster_id"] is not None and len(again["slip_matches"]) == 2
    assert again["reasons"] == [
        "open stakes of the writer's cluster 1950.00 + 60.00 would pass the limit 2000.00"
    ]


def test_unreadable_slip_is_refused_with_its_reason(client, session, keys):
    till = auth(keys.shop(make_shop(session).id))

    def check(image: bytes):  # type: ignore[no-untyped-def]
        return client.post(
            "/checks",
            data={"bet": json.dumps(BET)},
            files={"slip": ("x.png", image, "image/png")},
            headers=till,
        )

    # each refusal with its status: not an image, a header claiming too many pixels
    resp = check(b"not an image")
    assert resp.status_code == 415 and resp.json()["detail"].startswith("slip: not a recognised")
    resp = check(_bomb_png(100_000, 100_000))
    assert resp.status_code == 413 and "pixels" in resp.json()["detail"]


def test_repeated_bets_and_selection_liability_refer(client, session, keys):
    customer = make_customer(session)
    till = auth(keys.shop(make_shop(session).id))
    leg = {"sport": "Horse Racing", "event": "2.40 York", "selection": "Blue Moon", "odds": 3.0}
    other = {"sport": "Horse Racing", "event": "3.10 York", "selection": "Red Sky", "odds": 2.0}
    for _ in range(3):  # three bets on Blue Moon within the repeat window
        resp = client.post("/bets", json={"stake": 10, "customer_id": customer.id, "legs": [leg]})
        assert resp.status_code == 201
    double = {"bet_type": "double", "customer_id": customer.id, "legs": [other, leg]}
    got = _check(client, till, None, **double)
    assert got["reasons"] == ["3 bets on Blue Moon in the last 10 minutes"]
    assert got["decision"] == "refer"
    # another punter: no repeat; an anonymous 4,900 on Blue Moon at 3.0 leaves 9,800 liability
    resp = client.post("/bets", json={"stake": 4900, "legs": [leg]})
    assert resp.status_code == 201
    fresh = _check(client, till, None, legs=[leg], stake=150)  # adds 300 -> 10,160
    assert fresh["reasons"] == ["liability on Blue Moon would reach 10160.00, over 10000.00"]
    # the same horse name in another race carries none of that liability
    elsewhere = _check(client, till, None, legs=[leg | {"event": "4.15 Ripon"}], stake=150)
    assert (elsewhere["decision"], elsewhere["reasons"]) == ("accept", [])
