"""The committed small set: labels match images, bets match the handwriting, scenarios."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from sample_slips import SET_DIR
from sample_slips.build_set import SET_ARGS
from sample_slips.generate import _render
from sample_slips.plan import BET_COUNTS, LEGS_FOR, make_plan, parse_money
from sample_slips.splits import HELDOUT_FONTS, TEMPLATES_FIT, TEMPLATES_HELDOUT
from sample_slips.writers import EW_WORDS

HEADER = ["image", "writer", "customer", "shop", "template", "font", "split"]


@pytest.fixture(scope="module")
def labels() -> list[dict[str, str]]:
    with (SET_DIR / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return rows


@pytest.fixture(scope="module")
def bets() -> dict:  # type: ignore[type-arg]
    return json.loads((SET_DIR / "bets.json").read_text())


def test_labels_header_and_counts(labels: list[dict[str, str]]) -> None:
    with (SET_DIR / "labels.csv").open() as fh:
        assert fh.readline().strip().split(",") == HEADER
    assert len(labels) == 24 * 5
    per_writer = Counter(r["writer"] for r in labels)
    assert len(per_writer) == 24
    assert set(per_writer.values()) == {5}
    assert all(re.fullmatch(r"w\d{3}", w) for w in per_writer)
    assert {r["split"] for r in labels} == {"heldout"}
    assert {r["font"] for r in labels} <= set(HELDOUT_FONTS)
    assert {r["template"] for r in labels} <= set(TEMPLATES_FIT + TEMPLATES_HELDOUT)
    # Every design appears, including the ones never used for fitting.
    assert {r["template"] for r in labels} == set(TEMPLATES_FIT + TEMPLATES_HELDOUT)
    # Writers share fonts (24 writers, 11 held-out fonts): the font is not the identity.
    fonts = Counter(r["font"] for r in labels)
    assert max(fonts.values()) >= 10


def test_label_files_exist_and_are_greyscale_scans(labels: list[dict[str, str]]) -> None:
    images = sorted(p.name for p in SET_DIR.glob("slip_*.jpg"))
    assert images == sorted(r["image"] for r in labels)
    for r in labels[:12]:
        img = cv2.imread(str(SET_DIR / r["image"]), cv2.IMREAD_UNCHANGED)
        assert img is not None and img.dtype == np.uint8 and img.ndim == 2
        assert 950 <= img.shape[1] <= 1400
        hand = cv2.imread(str(SET_DIR / "masks" / r["image"].replace(".jpg", ".png")), 0)
        prnt = cv2.imread(str(SET_DIR / "masks" / r["image"].replace(".jpg", "_print.png")), 0)
        assert hand.shape == img.shape == prnt.shape
        assert set(np.unique(hand)) <= {0, 255} and set(np.unique(prnt)) <= {0, 255}


def test_set_size_under_15_mb() -> None:
    size = sum(f.stat().st_size for f in SET_DIR.rglob("*") if f.is_file())
    assert size < 15_000_000


def test_masks_align_with_ink(labels: list[dict[str, str]]) -> None:
    for r in labels[::10]:
        img = cv2.imread(str(SET_DIR / r["image"]), 0).astype(np.float32)
        hand = cv2.imread(str(SET_DIR / "masks" / r["image"].replace(".jpg", ".png")), 0) > 0
        prnt = cv2.imread(str(SET_DIR / "masks" / r["image"].replace(".jpg", "_print.png")), 0) > 0
        # Background: far from any ink (dilated masks), so blur does not leak into it.
        near = cv2.dilate((hand | prnt).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
        background = img[~near].mean()
        assert hand.sum() > 500, r["image"]
        assert img[hand].mean() < background - 40, r["image"]
        assert img[prnt].mean() < background - 40, r["image"]


def test_labels_match_bets(labels: list[dict[str, str]], bets: dict) -> None:  # type: ignore[type-arg]
    by_image = {b["image"]: b for b in bets["bets"]}
    assert set(by_image) == {r["image"] for r in labels}
    shops = {s["code"] for s in bets["shops"]}
    customers = {c["ref"]: c for c in bets["customers"]}
    for r in labels:
        b = by_image[r["image"]]
        assert b["shop"] == r["shop"] and b["shop"] in shops
        assert (b["customer"] or "") == r["customer"]
        assert b["customer"] is None or b["customer"] in customers
        assert b["template"] == r["template"]
        assert b["placed_at"].endswith("Z")
        placed = datetime.fromisoformat(b["placed_at"])
        for leg in b["legs"]:
            assert datetime.fromisoformat(leg["event_start"]) > placed
    for c in customers.values():
        assert c["status"] in {"active", "self_excluded", "closed"}
        assert c["risk_category"] in {"normal", "watch", "high", "new", "good"}
        date.fromisoformat(c["registered_at"])


def _written_stake(b: dict) -> str:  # type: ignore[type-arg]
    """The stake the writer wrote (in the stake box, or the first leg's stake cell)."""
    stakes = [w["text"] for w in b["writing"] if w["field"] in ("stake", "leg0.stake")]
    assert len(stakes) == 1, (b["image"], b["writing"])
    return stakes[0]


def test_text_on_slip_matches_bet_record(bets: dict) -> None:  # type: ignore[type-arg]
    for b in bets["bets"]:
        assert b["written_text"] == [w["text"] for w in b["writing"] if "text" in w]
        assert b["ticked"] == [w["field"] for w in b["writing"] if "mark" in w]
        text = " | ".join(b["written_text"]).lower()
        for leg in b["legs"]:
            assert leg["selection"].lower() in text, (b["image"], leg["selection"])
            venue = (
                leg["event"].split(" ", 1)[1]
                if leg["sport"]
                in (
                    "Horse Racing",
                    "Greyhounds",
                )
                else leg["event"]
            )
            assert venue.lower() in text, (b["image"], venue)
            hh, mm = leg["event_start"][11:13], leg["event_start"][14:16]
            h12 = str(int(hh) - 12 if int(hh) > 12 else int(hh))
            times = {f"{h}{sep}{mm}" for h in (h12, str(int(hh))) for sep in ".:"}
            if leg["sport"] in ("Horse Racing", "Greyhounds"):  # sport times are optional
                assert any(t in text for t in times), (b["image"], times)
        stake = _written_stake(b)
        assert parse_money(stake) == pytest.approx(b["unit_stake"]), b["image"]
        ew_written = any(stake.lower().endswith(" " + w.lower()) for w in EW_WORDS)
        ew_ticked = any(t.endswith(".ew") or t == "tick.ew" for t in b["ticked"])
        assert b["each_way"] == (ew_written or ew_ticked), b["image"]
        lines = BET_COUNTS[b["bet_type"]] * (2 if b["each_way"] else 1)
        assert b["total_stake"] == pytest.approx(b["unit_stake"] * lines)
        assert len(b["legs"]) == LEGS_FOR[b["bet_type"]]
        if b["bet_type"] != "single":
            words = {
                "double": ("double", "dbl"),
                "treble": ("treble", "tbl"),
                "trixie": ("trixie", "trix"),
                "patent": ("patent", "pat"),
                "yankee": ("yankee", "yank"),
                "lucky15": ("lucky 15", "l15"),
            }[b["bet_type"]]
            ticked = f"tick.{b['bet_type']}" in b["ticked"]
            assert ticked or any(t.lower() in words for t in b["written_text"]), b["image"]
        for t in b["written_text"]:
            if re.match(r"^(total|tot|t) ", t.lower()):
                assert parse_money(t) == pytest.approx(b["total_stake"]), b["image"]


def test_scenarios_fire_for_real_reasons(bets: dict) -> None:  # type: ignore[type-arg]
    kinds = {s["kind"]: s for s in bets["scenarios"]}
    assert set(kinds) == {
        "multi_account",
        "self_excluded_anonymous",
        "aml_over_threshold",
        "structuring",
        "selection_run",
    }
    by_image = {b["image"]: b for b in bets["bets"]}
    with (SET_DIR / "labels.csv").open(newline="") as fh:
        writer_of = {r["image"]: r["writer"] for r in csv.DictReader(fh)}
    customers = {c["ref"]: c for c in bets["customers"]}

    multi = kinds["multi_account"]
    used = {by_image[i]["customer"] for i in multi["images"]}
    assert len(used) >= 2 and used <= set(multi["customers"])
    assert {writer_of[i] for i in multi["images"]} == {multi["writer"]}

    excl = kinds["self_excluded_anonymous"]
    ref = excl["customers"][0]
    assert customers[ref]["status"] == "self_excluded"
    after = [
        by_image[i]
        for i in excl["images"]
        if by_image[i]["placed_at"][:10] > customers[ref]["self_excluded_at"]
    ]
    assert after and all(b["customer"] is None for b in after)
    assert any(by_image[i]["customer"] == ref for i in excl["images"])

    aml = kinds["aml_over_threshold"]
    slips = [by_image[i] for i in aml["images"]]
    assert all(b["customer"] is None for b in slips)
    assert sum(b["total_stake"] for b in slips) > aml["threshold"]
    assert len({b["shop"] for b in slips}) >= 3
    days = sorted(b["placed_at"][:10] for b in slips)
    assert (date.fromisoformat(days[-1]) - date.fromisoformat(days[0])).days <= 3

    st = kinds["structuring"]
    for i in st["images"]:
        assert 0.9 * st["limit"] <= by_image[i]["total_stake"] < st["limit"]

    run = kinds["selection_run"]
    assert len(run["images"]) >= 5
    assert len({writer_of[i] for i in run["images"]}) >= 2
    for i in run["images"]:
        assert any(leg["selection"] == run["selection"] for leg in by_image[i]["legs"])
    times = sorted(datetime.fromisoformat(by_image[i]["placed_at"]) for i in run["images"])
    assert (times[-1] - times[0]).total_seconds() <= 2 * 3600


def test_templates_shipped() -> None:
    names = {p.stem for p in (SET_DIR / "templates").glob("*.png")}
    assert set(TEMPLATES_HELDOUT) <= names
    assert set(TEMPLATES_FIT + TEMPLATES_HELDOUT) == names


def test_writers_json(labels: list[dict[str, str]]) -> None:
    ws = json.loads((SET_DIR / "writers.json").read_text())
    assert set(ws) == {r["writer"] for r in labels}
    for r in labels:
        assert ws[r["writer"]]["font"] == r["font"]


def test_committed_set_matches_the_generator() -> None:
    """Regenerating a few slips of the committed set with the current code gives the same
    scans (pixel tolerance: JPEG decoders may differ by a grey level between builds)."""
    plan = make_plan(
        writers=SET_ARGS["writers"],
        slips_per_writer=SET_ARGS["slips_per_writer"],
        seed=SET_ARGS["seed"],
        split=SET_ARGS["split"],
    )
    for p in plan.slips[:3]:
        buf, hmask, _ = _render(p, seed=SET_ARGS["seed"])
        new = cv2.imdecode(np.frombuffer(buf, np.uint8), 0).astype(np.int16)
        old = cv2.imread(str(SET_DIR / p.image), 0).astype(np.int16)
        assert new.shape == old.shape
        assert np.abs(new - old).mean() < 1.0
        mask_old = cv2.imread(str(SET_DIR / "masks" / Path(p.image).with_suffix(".png")), 0) > 0
        inter = (mask_old & (hmask > 0)).sum()
        union = (mask_old | (hmask > 0)).sum()
        assert inter / union > 0.98
