"""Tests for cv.embed: estimator contract, persistence, default model, writer separation."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from cv.embed import (
    DEFAULT_HINGE_LEGS,
    DEFAULT_POOL_SCALES,
    DEFAULT_STROKE_WIDTH,
    METHOD_VERSION,
    EmbeddingModel,
    embed_files,
    extract_raw,
    load_default_model,
)
from cv.features import hinge, inkviews, obif, texture
from cv.preprocess import load_image, preprocess, rescaled_ink

REPO_ROOT = Path(__file__).resolve().parents[2]
SET_DIR = REPO_ROOT / "sample_slips" / "set"


def _set_rows() -> list[dict[str, str]]:
    with (SET_DIR / "labels.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def _image(name: str) -> np.ndarray:
    return load_image((SET_DIR / name).read_bytes())


SMALL = dict(
    families=("hinge", "runlength", "lbp", "vlad"),
    vlad_clusters=8,
    n_components=12,
    max_keypoints=100,
)


@pytest.fixture(scope="module")
def small_fit():
    """A tiny model fitted on 6 writers x 3 slips of the committed set, plus other slips."""
    rows = _set_rows()
    writers = sorted({r["writer"] for r in rows})
    fit_w = set(writers[:6])
    fit_rows = [r for r in rows if r["writer"] in fit_w]
    fit_rows = [r for i, r in enumerate(fit_rows) if i % 5 < 3]
    images = [_image(r["image"]) for r in fit_rows]
    model = EmbeddingModel(**SMALL).fit(images, [r["writer"] for r in fit_rows])
    others = [_image(r["image"]) for r in rows if r["writer"] not in fit_w][:4]
    return model, others


def test_init_stores_params_only():
    m = EmbeddingModel(n_components=7, whiten=0.25)
    assert m.n_components == 7 and m.whiten == 0.25
    assert not [k for k in vars(m) if k.endswith("_")]
    with pytest.raises(RuntimeError, match="not fitted"):
        m.transform([np.zeros((40, 40), np.uint8)])


def test_fit_validates_parameters():
    blank = [np.full((40, 40), 255, np.uint8)] * 3
    with pytest.raises(ValueError, match="whiten"):
        EmbeddingModel(whiten=2.0).fit(blank, ["a", "b", "c"])
    with pytest.raises(ValueError, match="families"):
        EmbeddingModel(families=("nope",)).fit(blank, ["a", "b", "c"])
    with pytest.raises(ValueError, match="writers"):
        EmbeddingModel(families=("hinge",)).fit(blank, ["a", "b"])


def test_transform_shape_norm_and_determinism(small_fit):
    model, others = small_fit
    z = model.transform(others)
    assert z.dtype == np.float32 and z.shape == (len(others), model.dim)
    assert model.dim <= 12
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(z, model.transform(others))
    # one row vs a batch may round differently in BLAS
    np.testing.assert_allclose(model.embed(others[0]), z[0], atol=1e-5)


def test_blank_image_gives_a_finite_unit_vector(small_fit):
    model, _ = small_fit
    v = model.embed(np.full((300, 400), 250, np.uint8))
    assert np.isfinite(v).all()
    assert extract_raw(np.full((300, 400), 250, np.uint8)).ok is False


def test_save_load_roundtrip_and_version(small_fit, tmp_path):
    model, others = small_fit
    path = tmp_path / "m.npz"
    model.save(path)
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temp file
    loaded = EmbeddingModel.load(path)
    assert loaded.version == model.version
    assert loaded.version.startswith(f"hinge-runlength-lbp-vlad-{METHOD_VERSION}+")
    np.testing.assert_array_equal(loaded.transform(others[:2]), model.transform(others[:2]))
    # same parameters and weights -> same version; different weights -> different version
    loaded.projection_ = loaded.projection_ * 2
    assert loaded._compute_version() != model.version


def test_load_refuses_corrupt_and_foreign_files(small_fit, tmp_path):
    model, _ = small_fit
    path = tmp_path / "m.npz"
    model.save(path)
    data = dict(np.load(path))
    data["projection"] = data["projection"] + 1
    np.savez(tmp_path / "tampered.npz", **data)
    with pytest.raises(ValueError, match="SHA-256"):
        EmbeddingModel.load(tmp_path / "tampered.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a sliplink model"):
        EmbeddingModel.load(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="does not exist"):
        EmbeddingModel.load(tmp_path / "missing.npz")


def test_embed_files_reports_unreadable_files(small_fit, tmp_path):
    model, _ = small_fit
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    good = SET_DIR / _set_rows()[0]["image"]
    x, errors = embed_files([good, bad], model=model, jobs=1)
    assert errors[0] is None and errors[1] is not None and "bad.png" in errors[1]
    assert np.linalg.norm(x[0]) == pytest.approx(1.0, abs=1e-5)
    assert not x[1].any()
    x2, errors2 = embed_files([good, bad], model=model, jobs=2)
    np.testing.assert_allclose(x2, x, atol=1e-6)
    assert errors2[0] is None and "bad.png" in str(errors2[1])


def test_embed_files_chunks_keep_order_errors_and_vectors(small_fit, tmp_path):
    """Workers embed chunks of EMBED_CHUNK slips in one projection: across chunk
    boundaries, with an unreadable file inside a chunk, every row is still its own file's
    vector and every error sits on its own file."""
    from cv.embed import EMBED_CHUNK

    model, _ = small_fit
    bad = tmp_path / "torn.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 torn")
    good = [SET_DIR / r["image"] for r in _set_rows()[: EMBED_CHUNK + 3]]
    paths = good[:5] + [bad] + good[5:]
    one_by_one = np.stack([model.embed(load_image(p.read_bytes())) for p in good])
    designs: list = []
    usable: list[bool] = []
    for jobs in (1, 2):
        designs.clear()
        usable.clear()
        x, errors = embed_files(
            paths, model=model, jobs=jobs, designs_out=designs, usable_out=usable
        )
        assert [e is None for e in errors] == [p != bad for p in paths]
        assert "torn.jpg" in str(errors[5])
        assert not x[5].any() and usable[5] is False and designs[5] is None
        np.testing.assert_allclose(np.delete(x, 5, axis=0), one_by_one, atol=1e-5)
        assert len(designs) == len(usable) == len(paths)
        assert all(designs[i] is not None for i in range(len(paths)) if i != 5)


def test_default_model_separates_writers_of_the_committed_set():
    """Same-writer pairs score higher than different-writer pairs on held-out writers."""
    model = load_default_model()
    rows = _set_rows()
    writers = sorted({r["writer"] for r in rows})[:8]
    rows = [r for r in rows if r["writer"] in writers][:]
    x = model.transform([_image(r["image"]) for r in rows])
    assert x.shape[1] == model.dim and model.version
    y = np.array([r["writer"] for r in rows])
    sim = x @ x.T
    iu = np.triu_indices(len(y), k=1)
    same = y[iu[0]] == y[iu[1]]
    assert sim[iu][same].mean() > sim[iu][~same].mean() + 0.1
    # its calibration carries the linked-accounts rule's "different writers" bound
    # (groups of one writer sit above it on average)
    assert 0.1 < model.calibration_.distinct_writers < sim[iu][same].mean()


def test_nuisance_projection_removes_template_directions(small_fit):
    model, _ = small_fit
    rows = _set_rows()
    writers = sorted({r["writer"] for r in rows})[:6]
    fit_rows = [r for r in rows if r["writer"] in writers]
    fit_rows = [r for i, r in enumerate(fit_rows) if i % 5 < 3]
    images = [_image(r["image"]) for r in fit_rows]
    with pytest.raises(ValueError, match="nuisance"):
        EmbeddingModel(**SMALL).fit(images, [r["writer"] for r in fit_rows], nuisance=["a"])
    nap = EmbeddingModel(**SMALL, nuisance_directions=2).fit(
        images, [r["writer"] for r in fit_rows], nuisance=[r["template"] for r in fit_rows]
    )
    assert nap.dim == model.dim
    # I - U U^T with 2 directions: the projection loses exactly 2 ranks (the int8 storage
    # leaves them about 1 % of the largest singular value; the next is above 20 %)
    sv = np.linalg.svd(nap.projection_.astype(np.float64), compute_uv=False)
    assert (sv / sv.max() < 0.05).sum() == 2


def test_scale_pooling_averages_hinge_and_lbp_over_scales():
    img = _image(_set_rows()[0]["image"])
    one = extract_raw(img)
    pooled = extract_raw(img, pool_scales=(0.9, 1.1))
    # the other families and the descriptors are the normalised scale's alone
    for fam in ("runlength", "style"):
        np.testing.assert_array_equal(pooled.hist[fam], one.hist[fam])
    np.testing.assert_array_equal(pooled.descriptors, one.descriptors)
    p = preprocess(img, target_stroke_width=DEFAULT_STROKE_WIDTH)
    inks = [p.ink] + [rescaled_ink(p, f) for f in (0.9, 1.1)]
    want_hinge = np.mean([hinge.contour_features(k, legs=DEFAULT_HINGE_LEGS) for k in inks], axis=0)
    want_lbp = np.mean(
        [texture.lbp_histograms(k, smooth=inkviews.smoothed(inkviews.binary(k))) for k in inks],
        axis=0,
    )
    np.testing.assert_allclose(pooled.hist["hinge"], want_hinge, atol=1e-6)
    np.testing.assert_allclose(pooled.hist["lbp"], want_lbp, atol=1e-6)
    assert not np.allclose(pooled.hist["hinge"], one.hist["hinge"], atol=1e-4)
    # a histogram still: each LBP radius sums to 1
    np.testing.assert_allclose(pooled.hist["lbp"].reshape(3, 256).sum(axis=1), 1.0, atol=1e-5)


def test_obif_family_reads_the_grey_crop():
    img = _image(_set_rows()[0]["image"])
    raw = extract_raw(img, families=("obif",))
    assert set(raw.hist) == {"obif"}
    p = preprocess(img, target_stroke_width=DEFAULT_STROKE_WIDTH)
    np.testing.assert_array_equal(raw.hist["obif"], obif.obif_columns(p.grey, p.ink))
    assert raw.hist["obif"].shape == (obif.obif_dim(),)
    assert raw.hist["obif"].sum() == pytest.approx(len(obif.DEFAULT_SCALE_PAIRS), abs=1e-4)


def test_pool_scales_is_a_saved_parameter(small_fit, tmp_path):
    model, others = small_fit
    assert EmbeddingModel().pool_scales == DEFAULT_POOL_SCALES
    assert model.pool_scales == DEFAULT_POOL_SCALES  # fitted with the default
    model.save(tmp_path / "m.npz")
    loaded = EmbeddingModel.load(tmp_path / "m.npz")
    assert loaded.pool_scales == DEFAULT_POOL_SCALES
    assert loaded.get_params()["pool_scales"] == list(DEFAULT_POOL_SCALES)
    # part of the version: other scales are another model
    digest = model._digest()
    model.pool_scales = ()
    try:
        assert model._digest() != digest
    finally:
        model.pool_scales = DEFAULT_POOL_SCALES
    with pytest.raises(ValueError, match="pool_scales"):
        EmbeddingModel(**SMALL, pool_scales=(0.0,)).fit_raw(
            [model.extract(im) for im in others[:3]], ["a", "b", "c"]
        )


def test_keep_freed_memory_applies_on_glibc():
    import platform
    import sys

    from cv.embed import keep_freed_memory

    applied = keep_freed_memory()
    # elsewhere (macOS, musl) it changes nothing and says so
    assert applied == (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc")


def test_dense_step_and_lbp_radii_reach_the_features():
    img = _image(_set_rows()[0]["image"])
    base = extract_raw(img, families=("lbp", "vlad"), dense_step=4, max_keypoints=100_000)
    denser = extract_raw(img, families=("lbp", "vlad"), dense_step=2, max_keypoints=100_000)
    assert len(denser.descriptors) > 1.5 * len(base.descriptors)
    wider = extract_raw(img, families=("lbp",), lbp_radii=(1, 2, 4, 8))
    assert wider.hist["lbp"].shape == (4 * 256,)
    np.testing.assert_array_equal(wider.hist["lbp"][: 3 * 256], base.hist["lbp"])
    with pytest.raises(ValueError, match="dense_step"):
        EmbeddingModel(dense_step=0)._validate()


def test_model_files_from_before_dense_step_and_lbp_radii_embed_as_before(small_fit, tmp_path):
    """A header without the parameters added later loads with the values such files were
    fitted with (step 4, radii 1, 2, 4), passes its SHA-256 check and embeds the same."""
    from cv import npzfile
    from cv.embed import _LEGACY_PARAMS

    model, others = small_fit
    rows = _set_rows()
    writers = sorted({r["writer"] for r in rows})[:3]
    fit_rows = [r for r in rows if r["writer"] in writers][::2]
    old = EmbeddingModel(**SMALL, **_LEGACY_PARAMS).fit(
        [_image(r["image"]) for r in fit_rows], [r["writer"] for r in fit_rows]
    )
    path = _saved(old, tmp_path / "old.npz")
    header, arrays = npzfile.read_with_header(path, what="model file")
    for key in _LEGACY_PARAMS:
        del header["params"][key]
    header["sha256"] = old._digest(header["params"])
    np.savez_compressed(path, **arrays, **{npzfile.HEADER_KEY: npzfile.header_array(header)})
    loaded = EmbeddingModel.load(path)
    assert loaded.dense_step == 4 and loaded.lbp_radii == (1, 2, 4)
    assert loaded.pool_scales == () and (loaded.vlad_vocabularies, loaded.vlad_components) == (1, 0)
    assert loaded.descriptor_ink == "binary"
    assert loaded.version == old.version
    np.testing.assert_array_equal(loaded.transform(others[:2]), old.transform(others[:2]))
    # and a model saved with today's parameters keeps them
    assert EmbeddingModel.load(_saved(model, tmp_path / "new.npz")).dense_step == model.dense_step


def _saved(model: EmbeddingModel, path: Path) -> Path:
    model.save(path)
    return path


def _synthetic_raws(n_writers: int = 6, per: int = 3, seed: int = 0):
    """RawFeatures with RootSIFT-like descriptors drawn around a per-writer mean."""
    from cv.embed import RawFeatures

    rng = np.random.default_rng(seed)
    raws, writers = [], []
    for w in range(n_writers):
        centre = rng.random(128)
        for _ in range(per):
            d = np.abs(centre + 0.3 * rng.standard_normal((60, 128)))
            d = np.sqrt(d / d.sum(axis=1, keepdims=True)).astype(np.float32)
            raws.append(RawFeatures(descriptors=d))
            writers.append(f"w{w}")
    return raws, writers


VLAD_ONLY = dict(families=("vlad",), vlad_clusters=4, n_components=8)


def test_vlad_vocabularies_are_whitened_and_deterministic(tmp_path):
    raws, writers = _synthetic_raws()
    model = EmbeddingModel(**VLAD_ONLY, vlad_vocabularies=3, vlad_components=5)
    model.fit_raw(raws, writers)
    assert model.codebook_.shape == (3 * 4, 128)
    assert [p.shape for p in model.vlad_projections_] == [(4 * 128, 5)] * 3
    # each vocabulary is one seed on: the first is the one-vocabulary model's codebook
    one = EmbeddingModel(**VLAD_ONLY, vlad_vocabularies=1, vlad_components=0).fit_raw(raws, writers)
    np.testing.assert_array_equal(model.codebook_[:4], one.codebook_)
    assert not np.array_equal(model.codebook_[:4], model.codebook_[4:8])
    # the VLAD block: three whitened parts of 5 at equal norm (the block is L2-normalised)
    block = model._family_blocks(raws)[0]
    assert block.shape == (len(raws), 15)
    np.testing.assert_allclose(
        np.linalg.norm(block.reshape(len(raws), 3, 5), axis=2), 3**-0.5, atol=1e-5
    )
    z = model.transform_raw(raws)
    again = EmbeddingModel(**VLAD_ONLY, vlad_vocabularies=3, vlad_components=5).fit_raw(
        raws, writers
    )
    assert again.version == model.version
    np.testing.assert_array_equal(again.transform_raw(raws), z)
    model.save(tmp_path / "m.npz")
    loaded = EmbeddingModel.load(tmp_path / "m.npz")
    assert loaded.version == model.version
    assert (loaded.vlad_vocabularies, loaded.vlad_components) == (3, 5)
    np.testing.assert_array_equal(loaded.transform_raw(raws), z)
    with pytest.raises(ValueError, match="vlad_vocabularies"):
        EmbeddingModel(**VLAD_ONLY, vlad_vocabularies=0).fit_raw(raws, writers)


def test_model_files_without_the_vlad_vocabulary_parameters_load_as_fitted(tmp_path, monkeypatch):
    """Files saved before vlad_vocabularies / vlad_components existed: one raw VLAD."""
    import cv.embed as embed_mod
    from cv.features.local import vlad_encode

    raws, writers = _synthetic_raws()
    old = EmbeddingModel(**VLAD_ONLY, **embed_mod._LEGACY_PARAMS).fit_raw(raws, writers)
    # the encoding of those models: vlad_encode with the one codebook
    np.testing.assert_allclose(
        old._family_blocks(raws)[0],
        np.stack([vlad_encode(r.descriptors, old.codebook_) for r in raws]),
        atol=1e-6,
    )
    names = tuple(n for n in embed_mod._PARAM_NAMES if n not in embed_mod._LEGACY_PARAMS)
    with monkeypatch.context() as m:
        m.setattr(embed_mod, "_PARAM_NAMES", names)  # the code that wrote them
        old.version_ = version = old._compute_version()
        old.save(tmp_path / "old.npz")
    loaded = EmbeddingModel.load(tmp_path / "old.npz")
    assert (loaded.vlad_vocabularies, loaded.vlad_components) == (1, 0)
    assert loaded.version == version
    np.testing.assert_array_equal(loaded.transform_raw(raws), old.transform_raw(raws))


@pytest.mark.parametrize("bits", [8, 4])
def test_quantised_projections_round_trip_identically(tmp_path, bits):
    """projection_bits 8 / 4: integer codes + float32 per-column scales in the file; the
    fitted model already embeds with the dequantised projections, so loading changes
    nothing."""
    from cv import npzfile

    raws, writers = _synthetic_raws()
    model = EmbeddingModel(
        **VLAD_ONLY, vlad_vocabularies=2, vlad_components=5, projection_bits=bits
    )
    model.fit_raw(raws, writers)
    model.save(tmp_path / "m.npz")
    _, arrays = npzfile.read_with_header(tmp_path / "m.npz", what="model file")
    assert arrays["projection"].dtype == np.int8
    assert arrays["vlad_projection_scale"].shape == (2, 5)
    assert arrays["projection_scale"].dtype == np.float32
    rows = 4 * model.codebook_.shape[1]
    if bits == 8:
        assert arrays["vlad_projection"].dtype == np.int8
        # symmetric per column: each column's largest code is +-127
        assert (np.abs(arrays["vlad_projection"]).max(axis=1) == 127).all()
    else:  # two codes a byte
        assert arrays["vlad_projection"].shape == (2, rows * 5 // 2)
        assert arrays["vlad_projection"].dtype == np.uint8
    loaded = EmbeddingModel.load(tmp_path / "m.npz")
    assert loaded.version == model.version and loaded.projection_bits == bits
    np.testing.assert_array_equal(loaded.transform_raw(raws), model.transform_raw(raws))
    for a, b in zip(loaded.vlad_projections_, model.vlad_projections_, strict=True):
        np.testing.assert_array_equal(a, b)
    # the same fit stored as float16: the codes are the nearest levels to its projections
    f16 = EmbeddingModel(**VLAD_ONLY, vlad_vocabularies=2, vlad_components=5, projection_bits=16)
    f16.fit_raw(raws, writers)
    np.testing.assert_array_equal(f16.codebook_, model.codebook_)
    for pq, p16, scale in zip(
        model.vlad_projections_, f16.vlad_projections_, model.vlad_projection_scales_, strict=True
    ):
        if bits == 8:  # at most half a step
            assert (np.abs(pq - p16) <= 0.5 * scale + 1e-3 * np.abs(p16)).all()
        else:  # the nearest of the column's 16 levels
            from cv.embed import _LEVELS_4BIT

            nearest = np.abs(_LEVELS_4BIT[:, None, None] * scale - p16).min(axis=0)
            assert (np.abs(pq - p16) <= nearest + 1e-3 * np.abs(p16) + 1e-9).all()
    # the whitened VLADs (unit rows) stay close (the fit after them may turn its axes)
    cos = (model._family_blocks(raws)[0] * f16._family_blocks(raws)[0]).sum(axis=1)
    assert (cos > (0.99 if bits == 8 else 0.95)).all()
    with pytest.raises(ValueError, match="projection_bits"):
        EmbeddingModel(**VLAD_ONLY, projection_bits=6).fit_raw(raws, writers)


def test_descriptor_pca_shapes_and_whitening(tmp_path):
    raws, writers = _synthetic_raws()
    plain = EmbeddingModel(**VLAD_ONLY, descriptor_components=16).fit_raw(raws, writers)
    plain.save(tmp_path / "m.npz")
    loaded = EmbeddingModel.load(tmp_path / "m.npz")
    assert loaded.version == plain.version and loaded.descriptor_components == 16
    np.testing.assert_array_equal(loaded.transform_raw(raws), plain.transform_raw(raws))
    assert plain.descriptor_projection_.shape == (128, 16)
    assert plain.descriptor_mean_.shape == (128,)
    assert plain.codebook_.shape == (3 * 4, 16)
    assert [p.shape[0] for p in plain.vlad_projections_] == [4 * 16] * 3
    pooled = np.concatenate([r.descriptors for r in raws])
    var = plain._descriptors(pooled).var(axis=0)
    assert (np.diff(var) <= 1e-6).all()  # PCA order: decreasing variance
    white = EmbeddingModel(**VLAD_ONLY, descriptor_components=16, descriptor_whiten=1.0)
    white.fit_raw(raws, writers)
    np.testing.assert_allclose(white._descriptors(pooled).var(axis=0, ddof=1), 1.0, rtol=1e-3)
    assert white.version != plain.version
    # 0 keeps the 128-d RootSIFT and stores no descriptor arrays
    none = EmbeddingModel(**VLAD_ONLY, descriptor_components=0).fit_raw(raws, writers)
    assert none.codebook_.shape == (3 * 4, 128) and "descriptor_projection" not in none._arrays()
    with pytest.raises(ValueError, match="descriptor_components"):
        EmbeddingModel(**VLAD_ONLY, descriptor_components=129).fit_raw(raws, writers)


def test_a_model_of_the_default_shapes_fits_in_4_5_mb(tmp_path):
    """The file of a model with the default parameters (three 64 x 128-d VLADs whitened to
    256, 4-bit VLAD projections) stays under the repository's 5 MB file limit; random
    features compress worse than real ones, so this bounds the shipped model's size."""
    from cv.embed import RawFeatures

    rng = np.random.default_rng(0)
    dims = {"hinge": 912, "lbp": 768, "style": 72}
    raws, writers = [], []
    for i in range(300):
        d = np.sqrt(rng.dirichlet(np.ones(128), size=80)).astype(np.float32)
        hist = {f: rng.random(n).astype(np.float32) for f, n in dims.items()}
        raws.append(RawFeatures(hist=hist, descriptors=d))
        writers.append(f"w{i // 5}")
    model = EmbeddingModel(pool_scales=()).fit_raw(raws, writers)
    assert [p.shape for p in model.vlad_projections_] == [(64 * 128, 256)] * 3
    assert model.projection_.shape == (912 + 768 + 3 * 256 + 72, 256)
    model.save(tmp_path / "m.npz")
    assert (tmp_path / "m.npz").stat().st_size <= 4.5e6


def test_grouped_calibration_folds_keep_each_style_group_whole():
    from cv.embed import FOLD_SPLITS, fold_groups

    raws, writers = _synthetic_raws(n_writers=8, per=3)
    styles = [f"font{int(w[1:]) % 4}" for w in writers]  # two writers a style
    groups = fold_groups(writers, styles[:-3] + [""] * 3)  # the last writer has none
    assert groups[0] == "group:font0" and groups[-1] == "writer:w7"
    model = EmbeddingModel(**VLAD_ONLY).fit_raw(raws, writers, groups=styles)
    x = model._fuse(model._family_blocks(raws)).astype(np.float64)
    folds = model._heldout_folds(x, np.asarray(writers), None, groups=groups)
    assert len(folds) == 2 * FOLD_SPLITS
    for _, _, rows in folds:
        held = set(groups[rows].tolist())
        fitted = set(np.delete(groups, rows).tolist())
        assert held and not held & fitted  # a style is never on both sides of a split
    # the splits differ, so no one draw of the styles decides the operating point
    assert len({tuple(rows.tolist()) for _, _, rows in folds}) > 2
    with pytest.raises(ValueError, match="groups has 2 entries"):
        fold_groups(writers, ["a", "b"])


def test_the_learned_family_travels_inside_the_model_file(small_fit, tmp_path):
    """A model with the learned family carries its network: the file alone embeds the same,
    the network's weights are part of the version, and tampering fails the SHA-256 check."""
    import dataclasses

    from cv import npzfile
    from cv.features.learned import DEFAULT_LEARNED_PATH, learned_family, load_learned_model

    net = load_learned_model(DEFAULT_LEARNED_PATH)
    _, others = small_fit
    rows = _set_rows()
    fit_rows = [r for i, r in enumerate(rows) if i % 4 == 0][:18]
    images = [_image(r["image"]) for r in fit_rows]
    params = dict(SMALL, families=("hinge", "lbp", "learned"))
    with pytest.raises(ValueError, match="learned family needs its trained network"):
        EmbeddingModel(**params).fit(images, [r["writer"] for r in fit_rows])
    model = EmbeddingModel(**params, learned_net=net).fit(images, [r["writer"] for r in fit_rows])
    raw = model.extract(others[0])
    # the network reads the embedding's ink resized to its own stroke width
    prep = preprocess(others[0], target_stroke_width=model.stroke_width)
    want = learned_family(rescaled_ink(prep, net.stroke_width / model.stroke_width), net)
    np.testing.assert_array_equal(raw.hist["learned"], want)
    assert want.shape == (2 * net.dim,) and (want >= 0).all() and want.any()

    model.save(tmp_path / "m.npz")
    loaded = EmbeddingModel.load(tmp_path / "m.npz")
    assert loaded.learned_net is not None and loaded.version == model.version
    np.testing.assert_array_equal(loaded.transform(others), model.transform(others))

    other_net = dataclasses.replace(net, fc_bias=net.fc_bias + np.float32(0.01))
    digest = model._digest()
    model.learned_net = other_net
    try:
        assert model._digest() != digest
    finally:
        model.learned_net = net

    header, arrays = npzfile.read_with_header(tmp_path / "m.npz", what="model file")
    arrays["learned_fc_bias"] = arrays["learned_fc_bias"] + np.float32(0.01)
    arrays[npzfile.HEADER_KEY] = npzfile.header_array(header)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="SHA-256"):
        EmbeddingModel.load(tmp_path / "bad.npz")


def test_descriptor_ink_chooses_what_the_dense_descriptors_read():
    """The shipped recipe reads the darkness with its anti-aliased rims; files from before
    the parameter read the blurred binary ink. Same sample points, other gradients."""
    from cv.embed import _LEGACY_PARAMS

    img = _image(_set_rows()[0]["image"])
    grey = extract_raw(img, families=("vlad",))
    binary = extract_raw(img, families=("vlad",), descriptor_ink="binary")
    assert EmbeddingModel().descriptor_ink == "grey" == load_default_model().descriptor_ink
    assert _LEGACY_PARAMS["descriptor_ink"] == "binary"
    assert grey.descriptors.shape == binary.descriptors.shape and len(grey.descriptors) > 100
    assert not np.allclose(grey.descriptors, binary.descriptors, atol=0.05)
    again = EmbeddingModel(descriptor_ink="grey").extract(img)
    np.testing.assert_array_equal(again.descriptors, grey.descriptors)
    with pytest.raises(ValueError, match="descriptor_ink"):
        extract_raw(img, families=("vlad",), descriptor_ink="colour")
    with pytest.raises(ValueError, match="descriptor_ink"):
        EmbeddingModel(descriptor_ink="colour")._validate()
