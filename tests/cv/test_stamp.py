"""Tests for cv.stamp: the till stamp found by its barcode, and cleared from the handwriting."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import cv.preprocess as P
from cv import separate as S
from cv.stamp import barcode_boxes, stamp_mask
from sample_slips.generate import render_slip
from sample_slips.plan import make_plan
from sample_slips.scan import stamp

SAMPLES = Path(__file__).resolve().parents[2] / "sample_slips" / "set"
LINES = ["SHOP S03  TILL 2", "21/11/26 14:02:37", "BET ID 01A7C93D55", "STAKE GBP 12.50"]


def _page_with_stamp(turn: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A work-frame-sized page (ink True): a till stamp at half the till's size, as a
    1.1 MP scan's work frame holds it, and a handwritten line elsewhere."""
    st = stamp(LINES, "01A7C93D55", np.random.default_rng(3))
    st = cv2.resize(st, (st.shape[1] // 2, st.shape[0] // 2), interpolation=cv2.INTER_AREA) > 90
    if turn:
        st = np.rot90(st)
    page = np.zeros((400, 600), bool)
    stamp_ink = np.zeros_like(page)
    stamp_ink[150 : 150 + st.shape[0], 300 : 300 + st.shape[1]] = st
    hand = np.zeros((400, 600), np.uint8)
    cv2.putText(hand, "Red Rum 2 EW", (20, 80), cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, 1.4, 1, 3)
    return page | stamp_ink | (hand > 0), stamp_ink, hand > 0


@pytest.mark.parametrize("turn", [False, True])
def test_stamp_found_and_handwriting_left_alone(turn: bool) -> None:
    ink, stamp_ink, hand = _page_with_stamp(turn)
    mask = stamp_mask(ink)
    assert mask[stamp_ink].mean() > 0.95  # the barcode and the four lines of text
    assert not mask[hand].any()


def test_no_barcode_no_stamp() -> None:
    """Print that has bars of a sort: a column of check boxes, light letters in a dark
    header band, a table's rules; and handwriting."""
    ink = np.zeros((400, 600), np.uint8)
    for k in range(8):
        cv2.rectangle(ink, (40, 40 + 22 * k), (54, 54 + 22 * k), 1, 1)
    ink[250:272, 100:400] = 1
    cv2.putText(ink, "SELECTION STAKE", (110, 267), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 0, 2)
    for x in range(100, 500, 60):
        ink[280:390, x : x + 2] = 1
    cv2.putText(ink, "Lucky 15 Hove", (120, 340), cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, 1.2, 1, 3)
    ink = ink.astype(bool)
    assert barcode_boxes(ink) == []
    assert not stamp_mask(ink).any()


def test_a_hatched_box_is_not_a_barcode() -> None:
    """Sample slip 64 has no stamp; its WIN box is hatched with a dozen pen strokes."""
    image = cv2.imread(str(SAMPLES / "slip_00064.jpg"), cv2.IMREAD_GRAYSCALE)
    ink = P.work_frame(image, deskew=True, work_pixels=P.WORK_PIXELS).ink
    assert not stamp_mask(ink).any()


def test_held_out_slips_keep_less_of_the_stamp(monkeypatch: pytest.MonkeyPatch) -> None:
    """On generated held-out slips with a stamp, the kept handwriting holds less print
    with the stamp cleared, and the handwriting found barely changes."""
    plan = make_plan(writers=6, slips_per_writer=3, seed=12, split="heldout")
    slips = [p for p in plan.slips if p.stamp][:8]
    scores: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    for p in slips:
        image, hand, printed = render_slip(p, seed=12)
        for on in (False, True):
            monkeypatch.setattr(P, "STAMPS", on)
            mask = P.handwriting_mask(image)
            scores[on].append(S.pixel_scores(mask, hand > 0, printed > 0))
    precision = {on: np.nanmean([s["precision"] for s in v]) for on, v in scores.items()}
    recall = {on: np.mean([s["recall"] for s in v]) for on, v in scores.items()}
    assert precision[True] > precision[False] + 0.01
    assert recall[True] > recall[False] - 0.03
