"""Tests for cv.features: exact answers on tiny arrays, determinism, degenerate input."""

from __future__ import annotations

import numpy as np
import pytest

from cv.features import hinge, local, texture
from tests.cv.shapes import scribble_ink, square_ink


def test_contour_direction_of_a_square_is_horizontal_and_vertical():
    feats = hinge.contour_features(square_ink(), direction_bins=12, hinge_bins=8, legs=(3,))
    f1 = feats[:12]
    assert f1.sum() == pytest.approx(1.0)
    # straight edges only give 0 and 90 degrees; the rest comes from the 4 corners
    assert f1[0] + f1[6] > 0.6
    assert f1[0] == pytest.approx(f1[6])


def test_contour_features_blocks_are_distributions_and_dimension_matches():
    legs = (3, 6)
    feats = hinge.contour_features(scribble_ink(), legs=legs)
    assert feats.dtype == np.float32
    assert feats.shape == (hinge.hinge_dim(legs=legs),)
    # f1, f2 per leg, then f3h and f3v: every block sums to one
    tri = 24 * 25 // 2
    sizes = [12, tri, 12, tri, 144, 144]
    pos = 0
    for size in sizes:
        assert feats[pos : pos + size].sum() == pytest.approx(1.0, abs=1e-5)
        pos += size
    assert pos == len(feats)


@pytest.mark.parametrize(
    "fn",
    [
        lambda im: hinge.contour_features(im),
        lambda im: texture.run_length_histograms(im),
        lambda im: texture.lbp_histograms(im),
        lambda im: local.dense_rootsift(im),
    ],
)
def test_features_are_deterministic_and_zero_on_blank(fn):
    im = scribble_ink(3)
    np.testing.assert_array_equal(fn(im), fn(im.copy()))
    blank = fn(np.zeros((30, 40), np.uint8))
    assert not np.any(blank)


def test_features_reject_bad_input():
    with pytest.raises(ValueError, match="ink"):
        hinge.contour_features(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="ink"):
        texture.run_length_histograms(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="legs"):
        hinge.contour_features(np.zeros((4, 4), np.uint8), legs=())


def test_run_lengths_exact_on_one_row():
    row = np.array([[0, 255, 255, 0, 255, 0, 0]], np.uint8)
    h = texture.run_length_histograms(row, max_ink=3, max_gap=3)
    ink_h, gap_h, ink_v, gap_v = h[:3], h[3:6], h[6:9], h[9:12]
    # ink runs 2 and 1; the only background run bounded by ink on both sides has length 1
    np.testing.assert_allclose(ink_h, [0.5, 0.5, 0.0])
    np.testing.assert_allclose(gap_h, [1.0, 0.0, 0.0])
    # vertical runs: three single-pixel ink columns, no bounded background
    np.testing.assert_allclose(ink_v, [1.0, 0.0, 0.0])
    np.testing.assert_allclose(gap_v, [0.0, 0.0, 0.0])


def test_lbp_histograms_sum_to_one_per_radius():
    h = texture.lbp_histograms(scribble_ink(1), radii=(1, 2))
    assert h.shape == (texture.lbp_dim(radii=(1, 2)),)
    np.testing.assert_allclose([h[:256].sum(), h[256:].sum()], [1.0, 1.0], atol=1e-5)


def test_dense_rootsift_rows_are_rootsift():
    d = local.dense_rootsift(scribble_ink(2), max_points=50)
    assert d.shape[1] == 128 and 0 < len(d) <= 50
    assert (d >= 0).all()
    # RootSIFT: square roots of an L1-normalised vector have unit L2 norm
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)


def test_vlad_exact_on_two_centres():
    centres = np.array([[0.0, 0.0], [10.0, 10.0]], np.float32)
    desc = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    v = local.vlad_encode(desc, centres)
    # both go to centre 0: residual sum (1, 1) -> intra-norm -> signed sqrt -> L2
    np.testing.assert_allclose(v, [np.sqrt(0.5), np.sqrt(0.5), 0.0, 0.0], atol=1e-6)
    assert not local.vlad_encode(np.zeros((0, 2), np.float32), centres).any()


def test_codebook_is_seeded():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    a = local.fit_codebook(x, n_clusters=4, random_state=1)
    b = local.fit_codebook(x, n_clusters=4, random_state=1)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="n_clusters"):
        local.fit_codebook(x[:3], n_clusters=4)


def test_style_features_exact_blocks():
    from cv.features import style

    ink = np.zeros((10, 10), np.uint8)
    ink[2:8, 4:6] = 255
    grey = np.where(ink > 0, 0, 255).astype(np.uint8)
    f = style.style_features(ink, grey, stroke_width=2.0, x_height=20.0)
    assert f.shape == (style.style_dim(),)
    blocks = f.reshape(9, -1)
    # one short bar has too few edges for a slant and no neighbour for a letter gap or a
    # line angle: those blocks stay empty, every other measurement is one soft histogram
    np.testing.assert_allclose(blocks[[0, 1, 2, 3, 4, 7]].sum(axis=1), 1.0, atol=1e-6)
    assert not blocks[5].any() and not blocks[6].any() and not blocks[8].any()
    # pure black ink: darkness 1 peaks in the last bin, no spread peaks in the first
    assert blocks[3].argmax() == blocks.shape[1] - 1
    assert blocks[4].argmax() == 0
    assert blocks[7].argmax() == blocks.shape[1] - 1
    assert not style.style_features(np.zeros_like(ink), grey, stroke_width=2.0, x_height=20.0).any()
    with pytest.raises(ValueError, match="grey"):
        style.style_features(ink, grey[:5], stroke_width=2.0, x_height=20.0)


def _letters(lean: float, gap: int, rise: float = 0.0) -> np.ndarray:
    """A line of ten 30-px tall, 4-px wide strokes ``gap`` px apart, sheared by ``lean``,
    each ``rise`` px higher than the one before."""
    ink = np.zeros((120, 400), np.uint8)
    x = 20
    for n in range(10):
        lift = int(round(n * rise))
        for r in range(45, 75):
            c = int(round(x + lean * (75 - r)))
            ink[r - lift, c : c + 4] = 255
        x += 4 + gap
    return ink


def test_slant_follows_the_lean_of_the_strokes():
    from cv.features import style

    upright, right, left = (style.slant(_letters(v, 8)) for v in (0.0, 0.2, -0.2))
    assert abs(upright) < 0.02
    assert right > 0.1 and left < -0.1
    assert right == pytest.approx(-left, abs=0.02)
    assert np.isnan(style.slant(np.zeros((20, 20), np.uint8)))


def test_letter_gap_in_letter_heights():
    from cv.features import style

    assert style.letter_gap(_letters(0.0, 6), 30.0) == pytest.approx(6 / 30, abs=0.01)
    assert style.letter_gap(_letters(0.0, 3), 30.0) == pytest.approx(3 / 30, abs=0.01)
    # gaps of half a letter height or more are word gaps: no letter gap to report
    assert np.isnan(style.letter_gap(_letters(0.0, 20), 30.0))


def test_line_angle_follows_the_rise_of_the_letters():
    from cv.features import style

    # letters 16 px apart (centre to centre), each 1 px higher: atan(1/16) = 3.6 degrees
    assert style.line_angle(_letters(0.0, 12, rise=1.0), 30.0) == pytest.approx(3.58, abs=0.3)
    assert style.line_angle(_letters(0.0, 12, rise=-1.0), 30.0) == pytest.approx(-3.58, abs=0.3)
    assert style.line_angle(_letters(0.0, 12), 30.0) == pytest.approx(0.0, abs=0.01)
    assert np.isnan(style.line_angle(_letters(0.0, 12)[:, :30], 30.0))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_components_equal_opencv_labels_and_statistics(seed):
    import cv2

    from cv.features import inkviews

    rng = np.random.default_rng(seed)
    mask = (rng.random((61, 83)) > 0.8).astype(np.uint8) * (1 if seed else 255)
    mask[10, :] = 1  # a component across the whole width
    n, labels, stats = inkviews.components(mask)
    n_cv, labels_cv, stats_cv, _ = cv2.connectedComponentsWithStats(mask, 8, cv2.CV_32S)
    assert n == n_cv
    np.testing.assert_array_equal(labels, labels_cv)
    np.testing.assert_array_equal(stats, stats_cv)
    for edge in (np.zeros((5, 7), np.uint8), np.ones((5, 7), np.uint8)):
        got, want = inkviews.components(edge), cv2.connectedComponentsWithStats(edge, 8, cv2.CV_32S)
        assert got[0] == want[0]
        np.testing.assert_array_equal(got[2], want[2])


def test_smoothed_grey_reads_darkness_and_keeps_the_rims():
    import cv2

    from cv.features import inkviews

    # a bar drawn anti-aliased at a sub-pixel position: its rim pixels are part-grey
    big = np.full((40 * 8, 40 * 8), 255, np.uint8)
    big[10 * 8 + 3 : 30 * 8 + 3, 15 * 8 + 3 : 25 * 8 + 3] = 60
    grey = cv2.resize(big, (40, 40), interpolation=cv2.INTER_AREA)
    ink = (grey < 160).astype(np.uint8) * 255
    level = inkviews.smoothed_grey(grey, ink)
    assert level.dtype == np.float32 and level.shape == grey.shape
    assert level[0, 0] == 0.0  # paper
    assert level[20, 20] == pytest.approx((255 - 60) / 255, abs=1e-3)  # the stroke's middle
    # the rims: part-way between paper and the stroke, and where the edges lie within a
    # pixel: the bar spans columns 15.375-25.375, and the darkness-weighted centre of a row
    # finds its middle, 20.375, where the binary ink's blur says 20.0
    row = level[20]
    assert 0.05 < row[15] < 0.7 and 0.05 < row[25] < 0.7
    centres = np.arange(40) + 0.5
    assert float((row * centres).sum() / row.sum()) == pytest.approx(20.375, abs=0.05)
    binary = inkviews.smoothed(inkviews.binary(ink))[20]
    assert abs(float((binary * centres).sum() / binary.sum()) - 20.375) > 0.3
    # darkness, not a mask: a fainter pen reads fainter
    faint = (255 - (255 - grey.astype(np.int32)) // 3).astype(np.uint8)
    assert inkviews.smoothed_grey(faint, ink)[20, 20] == pytest.approx(level[20, 20] / 3, abs=0.01)
    with pytest.raises(ValueError, match="equal shapes"):
        inkviews.smoothed_grey(grey, ink[:-1])
