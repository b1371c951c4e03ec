"""Tests for the contour-geometry families: chain codes (Siddiqi & Vincent 2010) and COLD
(He & Schomaker 2017): exact answers on a square, shapes, determinism, degenerate input."""

from __future__ import annotations

import numpy as np
import pytest

from cv.features import chaincode, cold, inkviews
from tests.cv.shapes import scribble_ink, square_ink


def test_freeman_codes_of_a_unit_square_walk():
    # east, south (rows grow downwards), west, north
    chain = np.array([[0, 0], [1, 0], [1, 1], [0, 1]])
    np.testing.assert_array_equal(chaincode.freeman_codes(chain), [0, 6, 4, 2])
    diagonal = np.array([[0, 0], [1, -1], [2, 0], [1, 1]])  # NE, SE, SW, NW
    np.testing.assert_array_equal(chaincode.freeman_codes(diagonal), [1, 7, 5, 3])
    with pytest.raises(ValueError, match="8-connected"):
        chaincode.freeman_codes(np.array([[0, 0], [3, 0]]))


def test_chain_codes_of_asquare_ink():
    side = 21
    h = chaincode.chaincode_histograms(square_ink(side))
    assert h.shape == (chaincode.CHAINCODE_DIM,) and h.dtype == np.float32
    f1, f2, f3 = h[:8], h[8:72], h[72:584]
    curv1, curv2 = h[584:592], h[592:]
    # four straight edges of side - 1 steps each: only the axis codes, equally often
    np.testing.assert_allclose(f1, [0.25, 0, 0.25, 0, 0.25, 0, 0.25, 0], atol=1e-7)
    steps = 4 * (side - 1)
    # pairs: a code followed by itself except at the four corners
    assert f2.reshape(8, 8).trace() == pytest.approx((steps - 4) / steps)
    assert f3.sum() == pytest.approx(1.0)
    # curvature: straight everywhere but four turns of 90 degrees, all the same way round
    assert curv1[0] == pytest.approx((steps - 4) / steps)
    assert max(curv1[2], curv1[6]) == pytest.approx(4 / steps)
    assert curv2.sum() == pytest.approx(1.0)


def test_cold_of_a_square_is_its_edges_and_diagonals():
    side, bins, rbins, r_min, r_max = 21, 8, 4, 2.0, 64.0
    h = cold.cold_histograms(
        square_ink(side),
        ks=(1, 2),
        angle_bins=bins,
        radius_bins=rbins,
        r_min=r_min,
        r_max=r_max,
        epsilon=1.0,
    )
    assert h.shape == (cold.cold_dim(ks=(1, 2), angle_bins=bins, radius_bins=rbins),)
    edges, diagonals = h.reshape(2, bins, rbins)

    def radius_bin(length: float) -> int:
        return int(np.log(length / r_min) / np.log(r_max / r_min) * rbins)

    # the polygon is the square's 4 corners: edges of side - 1 px at 0, 90, 180, 270 degrees
    expected = np.zeros((bins, rbins))
    expected[[0, 2, 4, 6], radius_bin(side - 1)] = 0.25
    np.testing.assert_allclose(edges, expected, atol=1e-7)
    # k = 2 joins opposite corners: the diagonals, at 45 + 90 j degrees
    expected = np.zeros((bins, rbins))
    expected[[1, 3, 5, 7], radius_bin(np.sqrt(2) * (side - 1))] = 0.25
    np.testing.assert_allclose(diagonals, expected, atol=1e-7)


@pytest.mark.parametrize(
    "fn", [chaincode.chaincode_histograms, cold.cold_histograms], ids=["chaincode", "cold"]
)
def test_contour_geometry_deterministic_blocks_and_blank(fn):
    im = scribble_ink(3)
    a = fn(im)
    np.testing.assert_array_equal(a, fn(im.copy()))
    # given the contours, the same answer as computing them
    np.testing.assert_array_equal(a, fn(im, contours=inkviews.contours(inkviews.binary(im))))
    assert a.dtype == np.float32 and np.all(a >= 0)
    assert not np.any(fn(np.zeros((30, 40), np.uint8)))
    with pytest.raises(ValueError, match="ink"):
        fn(np.zeros((4, 4), np.float32))


def test_cold_blocks_sum_to_one_and_rotation_moves_orientation():
    im = scribble_ink(5)
    h = cold.cold_histograms(im)
    blocks = h.reshape(5, -1)
    np.testing.assert_allclose(blocks.sum(axis=1), 1.0, rtol=1e-5)
    # a quarter turn (counter-clockwise) turns every line by a quarter of the angle bins and
    # keeps its length: the pixel grid maps onto itself, so the polygons do too
    rot = cold.cold_histograms(np.ascontiguousarray(np.rot90(im)), ks=(1,), angle_bins=12)
    flat = cold.cold_histograms(im, ks=(1,), angle_bins=12)
    np.testing.assert_allclose(np.roll(flat.reshape(12, -1), 3, axis=0), rot.reshape(12, -1))
    with pytest.raises(ValueError, match="ks"):
        cold.cold_histograms(im, ks=())


def test_extract_raw_computes_the_new_families():
    from cv.embed import extract_raw

    img = 255 - scribble_ink(7)  # dark ink on light paper
    raw = extract_raw(img, families=("cold", "chaincode"), design=False)
    assert raw.hist["cold"].shape == (cold.cold_dim(),)
    assert raw.hist["chaincode"].shape == (chaincode.CHAINCODE_DIM,)


def test_cold_fuses_at_half_weight_and_the_shipped_model_does_not_extract_it():
    from cv.embed import EmbeddingModel, load_default_model

    model = EmbeddingModel(families=("hinge", "lbp", "vlad", "style", "cold"))
    assert model._weights() == [1.0, 1.0, 1.0, 1.0, 0.5]
    # the shipped file lists its four families: it neither extracts nor weighs COLD
    shipped = load_default_model()
    assert shipped.families == ("hinge", "lbp", "vlad", "style")
    raw = shipped.extract(255 - scribble_ink(2), design=False)
    assert set(raw.hist) == {"hinge", "lbp", "style"}


def test_fit_and_embed_with_the_contour_geometry_families():
    from cv.embed import EmbeddingModel

    images = [255 - scribble_ink(s) for s in range(6)]
    model = EmbeddingModel(families=("cold", "chaincode"), n_components=3).fit(
        images, ["a", "a", "b", "b", "c", "c"]
    )
    z = model.transform(images[:2])
    assert z.shape == (2, model.dim) and np.all(np.isfinite(z))
    np.testing.assert_array_equal(z, model.transform(images[:2]))
