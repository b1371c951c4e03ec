"""Tests for cv.separate: line removal, component features, the model, held-out slips."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from cv import separate as S
from cv.preprocess import handwriting_mask


def test_horizontal_line_removed_crossing_stroke_bridged() -> None:
    ink = np.zeros((60, 200), bool)
    ink[30:32, 10:190] = True  # ruled line, 180 px
    stroke = np.zeros_like(ink)
    stroke[15:46, 100:103] = True  # a pen stroke crossing it
    ink |= stroke
    kept, lines = S.remove_lines(ink)
    np.testing.assert_array_equal(kept, stroke)
    assert lines[30:32, 10:100].all() and lines[30:32, 103:190].all()


def test_dashed_and_vertical_lines_removed_curve_kept() -> None:
    ink = np.zeros((120, 300), bool)
    for x0 in range(10, 290, 10):
        ink[100:102, x0 : x0 + 6] = True  # dashed rule: 6 on, 4 off
    ink[5:115, 280:282] = True  # vertical rule
    curve = np.zeros((120, 300), np.uint8)
    t = np.linspace(0, 2 * math.pi, 100)
    pts = np.stack([120 + 18 * np.cos(t), 50 + 22 * np.sin(t)], 1).astype(np.int32)
    cv2.polylines(curve, [pts.reshape(-1, 1, 2)], True, 1, 3)
    ink |= curve > 0
    kept, _ = S.remove_lines(ink)
    np.testing.assert_array_equal(kept, curve > 0)


def test_thick_block_is_not_a_line() -> None:
    # A solid bar is a logo or a stack of strokes, not a rule: left to the classifier.
    ink = np.zeros((80, 300), bool)
    ink[20:40, 50:200] = True
    kept, lines = S.remove_lines(ink)
    assert kept[20:40, 50:200].all() and not lines.any()


def test_component_features_exact_on_a_rectangle() -> None:
    ink = np.zeros((20, 30), np.uint8)
    ink[5:10, 3:13] = 1  # 5 rows x 10 cols
    flat = np.full(ink.shape, 255, np.uint8)
    flat[ink > 0] = 55  # darkness 200
    n, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8, ltype=cv2.CV_32S)
    f = S.component_features(flat, labels, stats)
    assert f.shape == (1, len(S.FEATURE_NAMES))
    col = dict(zip(S.FEATURE_NAMES, f[0], strict=True))
    assert col["log_area"] == pytest.approx(math.log(50))
    assert col["log_width"] == pytest.approx(math.log(10))
    assert col["log_height"] == pytest.approx(math.log(5))
    assert col["fill"] == pytest.approx(1.0)
    assert col["log_aspect"] == pytest.approx(math.log(2))
    assert col["darkness"] == pytest.approx(200 / 255)
    assert col["darkness_std"] == pytest.approx(0.0, abs=1e-6)
    assert col["boundary_ratio"] == pytest.approx(26 / 50)  # 50 pixels, 3x8 interior


def test_component_features_alignment_counts() -> None:
    # Three glyph-like boxes on one baseline, one box off it.
    ink = np.zeros((60, 200), np.uint8)
    for x0 in (10, 30, 50):
        ink[20:30, x0 : x0 + 8] = 1
    ink[35:47, 120:128] = 1
    flat = np.where(ink > 0, 40, 255).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8, ltype=cv2.CV_32S)
    f = S.component_features(flat, labels, stats)
    same_bottom = f[:, S.FEATURE_NAMES.index("same_bottom")]
    order = np.argsort(stats[1:, 0])
    np.testing.assert_allclose(np.expm1(same_bottom[order]), [2, 2, 2, 0], atol=1e-5)


def test_print_shape_features_box_hatching_bar() -> None:
    # An empty tick box, six hatching strokes (////), a letter-like ring and a long bar.
    ink = np.zeros((200, 400), np.uint8)
    cv2.rectangle(ink, (10, 10), (44, 44), 1, 3)
    for k in range(6):
        cv2.line(ink, (100 + 18 * k, 100), (140 + 18 * k, 30), 1, 5)
    cv2.circle(ink, (300, 60), 20, 1, 3)
    cv2.line(ink, (200, 150), (380, 190), 1, 4)
    flat = np.where(ink > 0, 40, 255).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8, ltype=cv2.CV_32S)
    f = S.component_features(flat, labels, stats)
    col = {k: f[:, S.FEATURE_NAMES.index(k)] for k in S.FEATURE_NAMES}
    x = stats[1:, 0]
    box, ring, bar = (x == 8), (x == 278), (x == 198)
    hatch = ~(box | ring | bar)
    assert hatch.sum() == 6
    assert col["border_frac"][box] == pytest.approx(1.0)
    assert col["border_frac"][ring] < 0.95 and (col["border_frac"][hatch] < 0.5).all()
    # Straight bars fill their oriented box; a hollow box and a ring do not.
    assert (col["oriented_fill"][hatch | bar] > 0.9).all()
    assert (col["oriented_fill"][box | ring] < 0.4).all()
    assert (col["log_elongation"][hatch] > 2).all() and col["log_elongation"][ring] < 0.1
    # Each hatching stroke has five parallel neighbours; nothing else has any.
    np.testing.assert_allclose(np.expm1(col["parallel"][hatch]), 5, atol=1e-4)
    assert (col["parallel"][~hatch] == 0).all()


def test_context_features_exact() -> None:
    lay = S.Layout(
        gid=np.array([1, 1, 2]),
        cy=np.array([0, 0, 9]),
        cx=np.array([0, 1, 9]),
        shape=(10, 10),
        area=np.array([4.0, 16.0, 9.0]),
    )
    p = np.array([1.0, 0.0, 0.5], np.float32)
    c = S.context_features(p, lay)
    # sqrt(area) weights 2 and 4: group mean (2*1 + 4*0) / 6.
    np.testing.assert_allclose(c[:, 0], p)
    np.testing.assert_allclose(c[:, 1], [1 / 3, 1 / 3, 0.5], rtol=1e-6)
    np.testing.assert_allclose(c[:, 2], [1 / 3, 1 / 3, 0.5], rtol=1e-6)


def test_pixel_scores_exact() -> None:
    hand = np.zeros((10, 10), bool)
    hand[2, 2:8] = True  # 6 pixels
    printed = np.zeros_like(hand)
    printed[8, :] = True  # 10 pixels, far from the hand
    pred = np.zeros_like(hand)
    pred[3, 2:5] = True  # 3 pixels, 1 px from the hand: correct within tolerance
    pred[8, 0:2] = True  # 2 print pixels
    sc = S.pixel_scores(pred, hand, printed)
    assert sc["precision"] == pytest.approx(3 / 5)
    assert sc["recall"] == pytest.approx(4 / 6)  # dilated pred covers hand columns 2..5
    assert sc["print_kept"] == pytest.approx(2 / 10)
    strict = S.pixel_scores(pred, hand, printed, tolerance=0)
    assert strict["precision"] == 0.0 and strict["recall"] == 0.0


def _tiny_model(rng: np.random.Generator, k: int) -> S.Mlp:
    return S.Mlp(
        mean=rng.normal(size=k).astype(np.float32),
        scale=(1 + rng.random(k)).astype(np.float32),
        weights=(
            rng.normal(size=(k, 4)).astype(np.float32),
            rng.normal(size=(4, 1)).astype(np.float32),
        ),
        biases=(rng.normal(size=4).astype(np.float32), rng.normal(size=1).astype(np.float32)),
    )


def test_separator_roundtrip_without_pickle(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    k = len(S.FEATURE_NAMES)
    model = S.Separator(
        stage1=_tiny_model(rng, k), stage2=_tiny_model(rng, k + len(S.CONTEXT_NAMES)), threshold=0.4
    )
    path = tmp_path / "m.npz"
    model.save(path, meta={"note": "test"})
    with np.load(path, allow_pickle=False) as z:  # plain arrays only
        assert "s2_w1" in z.files
    back = S.Separator.load(path)
    x = rng.normal(size=(7, k)).astype(np.float32)
    lay = S.Layout(
        gid=np.arange(7), cy=np.zeros(7, np.int64), cx=np.arange(7), shape=(1, 7), area=np.ones(7)
    )
    np.testing.assert_allclose(back.predict_proba(x, lay), model.predict_proba(x, lay), rtol=1e-6)
    assert back.threshold == pytest.approx(0.4)
    with pytest.raises(ValueError, match="features"):
        back.predict_proba(x[:, :3])


def test_shipped_model_is_small_and_loads() -> None:
    assert S.MODEL_PATH.exists()
    assert S.MODEL_PATH.stat().st_size < 2_000_000
    model = S.Separator.load(S.MODEL_PATH)
    assert model.stage1.mean.shape == (len(S.FEATURE_NAMES),)


@pytest.fixture(scope="module")
def heldout_slips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sample_slips.generate import generate

    out = tmp_path_factory.mktemp("heldout")
    generate(out, writers=4, slips_per_writer=2, seed=77, split="heldout", masks=True)
    return out


def test_heldout_slips_keep_handwriting_and_drop_print(heldout_slips: Path) -> None:
    with (heldout_slips / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    tp = pred = hand = rec = kept = printed = 0.0
    for r in rows:
        stem = Path(r["image"]).stem
        img = cv2.imread(str(heldout_slips / r["image"]), cv2.IMREAD_GRAYSCALE)
        hm = cv2.imread(str(heldout_slips / "masks" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE) > 0
        pm = (
            cv2.imread(str(heldout_slips / "masks" / f"{stem}_print.png"), cv2.IMREAD_GRAYSCALE) > 0
        )
        sc = S.pixel_scores(handwriting_mask(img), hm, pm)
        tp, pred, hand = tp + sc["tp"], pred + sc["pred"], hand + sc["hand"]
        rec += sc["recall"] * sc["hand"]
        kept += sc["print_kept"] * sc["print"]
        printed += sc["print"]
    # Bounds are the measured values on this set with a margin (see the report / bench).
    assert rec / hand >= RECALL_BOUND, rec / hand
    assert tp / pred >= PRECISION_BOUND, tp / pred
    assert 1 - kept / printed >= PRINT_REMOVED_BOUND, 1 - kept / printed


# Measured on this set (seed 77, 8 slips, shipped model): recall 0.845, precision 0.971,
# print removed 0.999 (the session-13 model: 0.866, 0.871, 0.992; without randomised designs:
# 0.865, 0.852, 0.991).
RECALL_BOUND = 0.8
PRECISION_BOUND = 0.75
PRINT_REMOVED_BOUND = 0.975


def test_paste_crops_moves_crop_ink_to_handwriting() -> None:
    page = np.full((200, 300), 230, np.uint8)
    page[100:104, :] = 40  # a printed rule
    printed = (page < 128).astype(np.uint8) * 255
    crop = np.full((60, 80), 200, np.uint8)  # light grey paper with a dark stroke
    crop[20:40, 10:70] = 30
    too_big = np.zeros((250, 10), np.uint8)
    page2, hand, only_print = S.paste_crops(
        page, np.zeros_like(page), printed, [crop, too_big], np.random.default_rng(0)
    )
    r, c = np.nonzero(hand)
    assert int(hand.sum()) // 255 == 20 * 60 and (np.ptp(r), np.ptp(c)) == (19, 59)
    # only the ink is transferred: the crop's grey paper leaves the page's paper as it was
    assert page2[hand > 0].max() < 60 and np.median(page2[hand == 0]) == 230
    assert not (only_print & hand).any() and only_print.sum() <= printed.sum()


UNIPEN = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "unipen-dev"


@pytest.mark.skipif(not UNIPEN.is_dir(), reason="needs ../shared/data/unipen-dev")
def test_real_handwriting_on_a_form_at_slip_size_is_kept(tmp_path: Path) -> None:
    """Held-out writers' crops written on blank designs at a slip's handwriting size (0.4 of
    the crops' own): the separator keeps most of their ink and little print."""
    recall, precision = real_on_form_scores(tmp_path)
    assert recall >= REAL_ON_FORM_RECALL_BOUND, recall
    assert precision >= REAL_ON_FORM_PRECISION_BOUND, precision


def real_on_form_scores(tmp_path: Path) -> tuple[float, float]:
    """Handwriting pixel recall and precision of 12 pages, two crops each."""
    from sample_slips.generate import template_images
    from sample_slips.splits import unipen_split

    with (UNIPEN / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    _, held = unipen_split({r["writer"] for r in rows})
    chosen = [r for r in rows if r["writer"] in held][:24]
    blanks = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in template_images(tmp_path)]
    rng = np.random.default_rng(3)
    tp = pred = found = hand_px = 0.0
    for j in range(0, len(chosen), 2):
        page = blanks[(j // 2) % len(blanks)]
        crops = []
        for r in chosen[j : j + 2]:
            crop = cv2.imread(str(UNIPEN / "images" / r["image"]), cv2.IMREAD_GRAYSCALE)
            crops.append(cv2.resize(crop, None, fx=0.4, fy=0.4, interpolation=cv2.INTER_AREA))
        printed = (cv2.threshold(page, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)[1]).astype(
            np.uint8
        )
        page, hand, only_print = S.paste_crops(page, np.zeros_like(page), printed, crops, rng)
        sc = S.pixel_scores(handwriting_mask(page), hand > 0, only_print > 0)
        tp, pred = tp + sc["tp"], pred + sc["pred"]
        found, hand_px = found + sc["recall"] * sc["hand"], hand_px + sc["hand"]
    return found / hand_px, tp / pred


# Measured on these 12 pages: recall 0.619, precision 0.946 (shipped, session 19).  The
# session-18 separator (720 generated slips, crops only as plain images) gave 0.555 / 0.634,
# one fitted on 3,420 generated slips without the pasted set 0.559 / 0.961.
REAL_ON_FORM_RECALL_BOUND = 0.59
REAL_ON_FORM_PRECISION_BOUND = 0.9


def test_a_tilted_dashed_crease_is_removed_and_letters_kept() -> None:
    # a crease at 3 degrees broken into 1-4 px dashes across a 500 x 400 frame, a word of
    # blob letters beside it and a straight "l" as long as the word is tall
    ink = np.zeros((400, 500), bool)
    rng = np.random.default_rng(0)
    for x in range(0, 500, 6):
        y = int(round(200 + x * math.tan(math.radians(3))))
        ink[y, x : x + int(rng.integers(1, 5))] = True
    word = np.zeros_like(ink)
    for i, x0 in enumerate(range(100, 180, 16)):
        cv2.ellipse(word.view(np.uint8), (x0, 120), (6, 8), 15 * i, 0, 360, 1, 2)
    word[100:130, 190:193] = True
    ink |= word
    kept, creases = S.remove_creases(ink)
    np.testing.assert_array_equal(kept, word)
    assert creases.sum() == (ink & ~word).sum()


@pytest.mark.skipif(not UNIPEN.is_dir(), reason="needs ../shared/data/unipen-dev")
@pytest.mark.parametrize("creases", [True, False])
def test_a_fold_across_a_plain_sheet_is_not_kept_as_handwriting(
    creases: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A few real words on a sheet of plain paper with a faint, slightly tilted fold line
    across it: the kept ink is the words (without crease removal, mostly the crease)."""
    import cv.preprocess as P

    monkeypatch.setattr(P, "CREASES", creases)
    with (UNIPEN / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))[:6]
    rng = np.random.default_rng(5)
    kept = inside = 0
    for j, r in enumerate(rows):
        crop = cv2.imread(str(UNIPEN / "images" / r["image"]), cv2.IMREAD_GRAYSCALE)
        crop = cv2.resize(crop, None, fx=0.4, fy=0.4, interpolation=cv2.INTER_AREA)
        page = np.full((900, 1150), 232, np.uint8)
        page, hand, _ = S.paste_crops(page, np.zeros_like(page), np.zeros_like(page), [crop], rng)
        tilt = math.tan(math.radians(-2.5 + j))
        y0 = 300 + 60 * j
        cv2.line(page, (0, y0), (1149, int(y0 + 1149 * tilt)), 150, 1, cv2.LINE_AA)
        page = cv2.GaussianBlur(page, (0, 0), 0.6)
        pred = handwriting_mask(page)
        near_hand = cv2.dilate(hand, np.ones((7, 7), np.uint8)) > 0
        kept += int(pred.sum())
        inside += int((pred & near_hand).sum())
    precision = inside / max(kept, 1)
    if creases:
        assert precision >= 0.95, precision  # measured 1.00
    else:
        assert precision < 0.8, precision  # measured 0.52
