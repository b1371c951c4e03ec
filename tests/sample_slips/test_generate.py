"""generate(): determinism, validation, masks, template blanks, the drawn text boxes."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from sample_slips import generate, template_images
from sample_slips.generate import _draw_hand, render_slip
from sample_slips.plan import make_plan
from sample_slips.splits import FIT_FONTS, TEMPLATES_FIT, TEMPLATES_HELDOUT
from sample_slips.templates import DESIGNS, layout


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_whatever_jobs(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", writers=3, slips_per_writer=2, seed=11, masks=True)
    b = generate(tmp_path / "b", writers=3, slips_per_writer=2, seed=11, masks=True, jobs=2)
    fa, fb = _files(a), _files(b)
    assert len(fa) == 6 * 3 + 3  # images + 2 masks each + labels, bets, writers
    assert fa == fb


def test_other_seed_other_slips_same_writers(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", writers=2, slips_per_writer=1, seed=1)
    b = generate(tmp_path / "b", writers=2, slips_per_writer=1, seed=2)
    assert (a / "slip_00001.jpg").read_bytes() != (b / "slip_00001.jpg").read_bytes()
    # Writers are a function of (split, index) only: w001 is the same person in both sets.
    assert (a / "writers.json").read_bytes() == (b / "writers.json").read_bytes()


def test_a_set_can_start_past_the_writers_of_earlier_sets(tmp_path: Path) -> None:
    """--first-writer: writers 1001-1002 are new people; writer 2 is the same in both sets."""
    late = generate(tmp_path / "late", writers=2, slips_per_writer=1, seed=4, first_writer=1001)
    early = generate(tmp_path / "early", writers=2, slips_per_writer=1, seed=4)
    with (late / "labels.csv").open(newline="") as fh:
        assert [r["writer"] for r in csv.DictReader(fh)] == ["w1001", "w1002"]
    shifted = generate(tmp_path / "shift", writers=1, slips_per_writer=1, seed=4, first_writer=2)
    people = [json.loads((d / "writers.json").read_text()) for d in (early, shifted, late)]
    assert people[1]["w002"] == people[0]["w002"] and "w001" not in people[1]
    style = [{k: v for k, v in w.items() if k != "id"} for w in people[0].values()]
    assert all({k: v for k, v in w.items() if k != "id"} not in style for w in people[2].values())
    with pytest.raises(ValueError, match="first_writer"):
        generate(tmp_path / "bad", writers=1, slips_per_writer=1, seed=4, first_writer=0)


def test_fit_split_uses_fit_fonts_designs_and_ids(tmp_path: Path) -> None:
    out = generate(tmp_path / "f", writers=4, slips_per_writer=3, seed=5, split="fit")
    with (out / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert all(r["writer"].startswith("f") for r in rows)
    assert {r["font"] for r in rows} <= set(FIT_FONTS)
    assert {r["template"] for r in rows} <= set(TEMPLATES_FIT)
    assert {r["split"] for r in rows} == {"fit"}
    assert Counter(r["writer"] for r in rows) == {f"f{i:03d}": 3 for i in range(1, 5)}
    assert not (out / "masks").exists()


def test_small_set_has_every_scenario_it_can(tmp_path: Path) -> None:
    out = generate(tmp_path / "s", writers=5, slips_per_writer=3, seed=3)
    bets = json.loads((out / "bets.json").read_text())
    assert len(bets["scenarios"]) == 5
    assert len(bets["bets"]) == 15


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"writers": 0, "slips_per_writer": 1}, "writers"),
        ({"writers": 2, "slips_per_writer": -1}, "slips_per_writer"),
        ({"writers": 2, "slips_per_writer": 1, "jobs": 0}, "jobs"),
        ({"writers": 2, "slips_per_writer": 1, "split": "train"}, "split"),
    ],
)
def test_bad_arguments_name_the_parameter(tmp_path: Path, kwargs: dict, name: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=name):
        generate(tmp_path / "x", seed=1, **kwargs)


def test_unwritable_out_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="out_dir"):
        generate(blocker / "sub", writers=1, slips_per_writer=1, seed=1)


def test_every_written_item_lands_in_its_box() -> None:
    """The drawn handwriting covers each box the bet record says was written in."""
    plan = make_plan(writers=6, slips_per_writer=3, seed=9, split="heldout")
    for p in plan.slips:
        lay = layout(p.template)
        rng = np.random.default_rng(0)
        hand = _draw_hand(p, lay, rng)
        for it in p.items:
            x0, y0, x1, y1 = lay.fields[it["field"]]
            inside = hand[max(0, y0 - 10) : y1 + 10, max(0, x0 - 10) : x1 + 10]
            assert (inside > 128).sum() > 30, (p.image, it)
        # Nothing is written in boxes the record does not mention (legs beyond the bet).
        unused = [k for k in lay.fields if k.startswith(f"leg{len(p.legs)}.")]
        for k in unused:
            x0, y0, x1, y1 = lay.fields[k]
            assert (hand[y0 + 8 : y1 - 8, x0 + 8 : x1 - 8] > 128).sum() < 400, (p.image, k)


def test_template_images(tmp_path: Path) -> None:
    paths = template_images(tmp_path / "t")
    assert {p.stem for p in paths} == set(DESIGNS) == set(TEMPLATES_FIT + TEMPLATES_HELDOUT)
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        assert img.dtype == np.uint8 and img.ndim == 2
        assert 1000 <= img.shape[1] <= 1400
        assert img.min() < 100 and np.median(img) > 200


def test_blank_design_render_is_the_same_slip_without_its_form() -> None:
    """Same handwriting, same scan; the print left is the till stamp (or nothing)."""
    plan = make_plan(writers=2, slips_per_writer=3, seed=9, split="heldout")
    stamped = [p for p in plan.slips if p.stamp][0]
    plain = [p for p in plan.slips if not p.stamp]
    for p in [stamped, *plain[:1]]:
        image, hand, printed = render_slip(p, seed=9)
        _, hand_b, printed_b = render_slip(p, seed=9, blank_design=True)
        np.testing.assert_array_equal(hand, hand_b)
        assert (printed_b > 0).sum() < 0.5 * (printed > 0).sum()
        # the stamp lies where the full slip has print
        assert ((printed_b > 0) & ~(printed > 0)).sum() <= 0.01 * max((printed_b > 0).sum(), 1)
        assert ((printed_b > 0).sum() > 2000) == p.stamp
