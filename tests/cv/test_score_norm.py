"""Score normalisation: per-slip offsets from the collection, and clustering, calibration and
incremental assignment on scores ``cos - (b_i + b_j) / 2``."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from cv.cluster import (
    DEFAULT_OFFSET_RANKS,
    Calibration,
    _pooled_operating_point,
    assign_incremental,
    augmented,
    batch_vectors,
    calibrate_clustering,
    cluster_calibrated,
    cluster_embeddings,
    diffused_scores,
    impostor_tail,
    indexed_offsets,
    knn_graph,
    membership_confidence,
    ranking_scores,
    same_account,
    score_offsets,
)
from cv.index import VectorIndex, normalise_rows
from cv.metrics import clustering_scores, pair_counts, retrieval_scores


def _font_writers(seed: int, n_writers: int = 60, per_writer: int = 6, *, d: int = 32):
    """Writers who share a 'font' direction with others, more strongly for some fonts than
    for others: the slips of a strong font are close to every slip of that font, so one raw
    cosine threshold is too low for them or too high for everyone else (as generated slips
    of one handwriting font are)."""
    rng = np.random.default_rng(seed)
    n_fonts = 6
    font_dir = normalise_rows(rng.standard_normal((n_fonts, d)))
    strength = np.linspace(0.0, 1.2, n_fonts)
    font = np.arange(n_writers) % n_fonts
    own = normalise_rows(rng.standard_normal((n_writers, d)))
    centres = normalise_rows(own + strength[font, None] * font_dir[font])
    writers = np.repeat(np.arange(n_writers), per_writer)
    x = centres[writers] + 0.16 * rng.standard_normal((writers.size, d))
    return normalise_rows(x).astype(np.float32), writers


def test_score_offsets_average_the_rank_band_and_degrade_gracefully():
    sims = np.array(
        [
            [0.9, 0.8, 0.5, 0.4, 0.3],
            [0.9, 0.7, 0.6, -np.inf, -np.inf],  # fewer neighbours than the band's end
            [0.9, -np.inf, -np.inf, -np.inf, -np.inf],  # none in the band: the furthest
            [-np.inf] * 5,  # no neighbour at all
        ],
        dtype=np.float32,
    )
    got = score_offsets(sims, (2, 5))
    np.testing.assert_allclose(got, [0.4, 0.6, 0.9, 0.0], atol=1e-6)
    assert got.dtype == np.float32
    assert score_offsets(np.empty((2, 0)), (2, 5)).tolist() == [0.0, 0.0]  # an empty index
    # with a fill (the calibration's typical offset) missing band ranks count at it
    filled = score_offsets(sims, (2, 5), fill=0.5)
    np.testing.assert_allclose(filled, [0.4, (0.6 + 2 * 0.5) / 3, 0.5, 0.5], atol=1e-6)
    with pytest.raises(ValueError, match="0 <= lo < hi"):
        score_offsets(sims, (3, 3))


def test_left_out_neighbours_do_not_count_towards_the_rank_band():
    sims = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]], np.float32)
    skip = np.array([[True, True, False, False, False, False], [False] * 6])
    # row 0: its first two neighbours are left out, so ranks 1-3 are 0.6, 0.5 (and 0.4)
    np.testing.assert_allclose(score_offsets(sims, (1, 3), skip=skip), [0.55, 0.75], atol=1e-6)
    # more left out than the band needs: the missing ranks count at the fill
    all_out = np.ones_like(skip)
    np.testing.assert_allclose(score_offsets(sims, (1, 3), fill=0.3, skip=all_out), [0.3, 0.3])
    with pytest.raises(ValueError, match="skip must be shaped"):
        score_offsets(sims, (1, 3), skip=skip[:, :3])


def test_same_account_marks_neighbours_of_the_slips_own_known_account():
    nbr = np.array([[1, 2, -1], [0, 2, 3], [3, 0, 1], [2, 1, 0]])
    accounts = np.array(["a", "a", "", None], dtype=object)  # slips 2 and 3 are anonymous
    got = same_account(nbr, accounts)
    assert got.tolist() == [
        [True, False, False],  # a missing neighbour (-1) is no one's
        [True, False, False],
        [False, False, False],  # anonymous slips share an account with no one
        [False, False, False],
    ]
    # integer keys (customer ids), a negative one for an anonymous slip: the same answer
    assert same_account(nbr, np.array([7, 7, -1, -1])).tolist() == got.tolist()
    with pytest.raises(ValueError, match="one entry per slip"):
        same_account(nbr, accounts[:2])


def test_a_regular_customers_own_slips_leave_his_offsets_and_he_clusters():
    """A customer with many slips: his own slips are his nearest, so they filled his offset
    band, his offsets ran high and no score between his slips cleared the threshold (held-out
    generated writers with 30 slips: pairwise recall 0.002).  Left out by account, he clusters
    like everyone else, with nobody else's precision or recall changed."""

    def with_accounts(x, w):  # every other writer has an account
        return x, w, np.array([f"acct{v}" if v % 2 == 0 else "" for v in w], dtype=object)

    folds = [_font_writers(1), _font_writers(2)]
    anonymous = calibrate_clustering(folds, offset_ranks=DEFAULT_OFFSET_RANKS, offset_prior=500.0)
    by_account = calibrate_clustering(
        [with_accounts(*f) for f in folds], offset_ranks=DEFAULT_OFFSET_RANKS, offset_prior=500.0
    )
    assert by_account.account_aware and not anonymous.account_aware
    # integer accounts (customer ids, -1 anonymous) calibrate the same as string ones
    as_ids = calibrate_clustering(
        [(x, w, np.where(w % 2 == 0, w, -1)) for x, w in folds],
        offset_ranks=DEFAULT_OFFSET_RANKS,
        offset_prior=500.0,
    )
    assert as_ids.to_json() == by_account.to_json()
    assert Calibration.from_json(by_account.to_json()).account_aware
    occasional, w_occ = _font_writers(3)
    regulars, w_reg = _font_writers(7, n_writers=6, per_writer=40)
    x, w = np.vstack([occasional, regulars]), np.concatenate([w_occ, w_reg + 1000])
    accounts = np.array([f"acct{v}" if v >= 1000 else "" for v in w], dtype=object)
    regular = w >= 1000
    before = cluster_calibrated(x, anonymous, accounts=accounts)[0]  # ignored: not calibrated so
    after = cluster_calibrated(x, by_account, accounts=accounts)[0]
    # measured: regulars' pairwise recall 0.018 -> 0.321, B-cubed F1 0.082 -> 0.506;
    # everyone else's precision / recall 0.989 / 0.192 -> 0.989 / 0.193
    was = clustering_scores(w[regular], before[regular])
    now = clustering_scores(w[regular], after[regular])
    assert was["pairwise_recall"] < 0.05 and now["pairwise_recall"] > 0.2
    assert clustering_scores(w, after)["pairwise_precision"] >= 0.98
    others_was = clustering_scores(w[~regular], before[~regular])
    others_now = clustering_scores(w[~regular], after[~regular])
    assert others_now["pairwise_precision"] >= 0.98
    assert others_now["pairwise_recall"] >= others_was["pairwise_recall"] - 0.02


def test_average_linkage_with_offsets_is_upgma_on_the_adjusted_scores():
    """With every pair in the graph, the closed-form cluster averages give exactly the
    clustering of textbook UPGMA on the adjusted score matrix."""
    x, _ = _font_writers(5, n_writers=12, per_writer=4)
    n = len(x)
    nbr, sim = knn_graph(x, k=n - 1)
    b = score_offsets(sim, (2, 6))
    adjusted = x @ x.T - 0.5 * (b[:, None] + b[None, :])
    dist = 1.0 - adjusted
    np.fill_diagonal(dist, 0.0)
    tree = linkage(squareform((dist + dist.T) / 2, checks=False), "average")
    for t in (0.05, 0.15, 0.3):
        ours = cluster_embeddings(
            x, threshold=t, neighbours=(nbr, sim), offsets=b, min_cluster_size=1
        )
        ref = fcluster(tree, 1.0 - t, "distance")
        assert clustering_scores(ref, ours)["ari"] == pytest.approx(1.0)


def test_normalised_calibration_recalls_far_more_at_the_target_precision():
    folds = [_font_writers(1), _font_writers(2)]
    raw = calibrate_clustering(folds)
    norm = calibrate_clustering(folds, offset_ranks=DEFAULT_OFFSET_RANKS)
    assert raw.offset_ranks is None and norm.offset_ranks == DEFAULT_OFFSET_RANKS
    assert raw.typical_offset is None and 0.0 < norm.typical_offset < 1.0  # type: ignore[operator]
    x, w = _font_writers(3)  # writers neither calibration saw
    at_raw = clustering_scores(w, cluster_calibrated(x, raw)[0])
    at_norm = clustering_scores(w, cluster_calibrated(x, norm)[0])
    assert at_norm["pairwise_precision"] >= 0.95
    assert at_norm["pairwise_recall"] > at_raw["pairwise_recall"] + 0.3
    assert at_norm["ari"] > at_raw["ari"] + 0.3


def test_cluster_calibrated_confidences_follow_the_adjusted_evidence():
    x, w = _font_writers(4)
    cal = calibrate_clustering([_font_writers(1)], offset_ranks=DEFAULT_OFFSET_RANKS)
    labels, conf = cluster_calibrated(x, cal)
    nbr, sim = knn_graph(x, k=15)
    b = score_offsets(sim)
    again = membership_confidence(
        None, labels, calibration=cal, neighbours=(nbr[:, :10], sim[:, :10]), offsets=b
    )
    np.testing.assert_allclose(conf, again)
    assert (conf[labels < 0] == 0).all() and (conf[labels >= 0] > 0).all()


def test_assignment_uses_offsets_and_hands_back_the_ones_it_computed():
    x, w = _font_writers(6, n_writers=30)
    index = VectorIndex(x.shape[1])
    ids = np.arange(1000, 1000 + len(x) - 1)
    index.add(ids, x[:-1])
    cal = Calibration(0.2, 0.1, 30.0, 0.05, offset_ranks=DEFAULT_OFFSET_RANKS)
    labels = cluster_embeddings(
        x[:-1], threshold=0.1, offsets=score_offsets(knn_graph(x[:-1], k=15)[1])
    )
    slip_cluster = {int(i): int(c) for i, c in zip(ids, labels, strict=True) if c >= 0}
    a = assign_incremental(x[-1], index=index, slip_cluster=slip_cluster, calibration=cal, k=10)
    # its own offset: the mean of its raw neighbour similarities at ranks 5..15
    raw, _ = index.search(x[-1:], 15)
    assert a.offset == pytest.approx(float(raw[0, 5:15].mean()), abs=1e-5)
    # every neighbour's offset was computed from the index, as indexed_offsets does
    seen = [i for i, _ in a.neighbours]
    assert set(seen) <= set(a.new_offsets)
    expected = indexed_offsets(index, seen)
    for i in seen:
        assert a.new_offsets[i] == pytest.approx(expected[i], abs=1e-6)
    # with them known, nothing new is computed and the decision is the same
    b = assign_incremental(
        x[-1], index=index, slip_cluster=slip_cluster, calibration=cal, k=10, offsets=a.new_offsets
    )
    assert b.new_offsets == {} and b.cluster_id == a.cluster_id
    # scores are adjusted: neighbour score = cos - (own + neighbour offset) / 2
    all_sims, all_ids = index.search(x[-1:], 30)
    cos = dict(zip(all_ids[0].tolist(), all_sims[0].tolist(), strict=True))
    for i, s in a.neighbours:
        assert s == pytest.approx(cos[i] - 0.5 * (a.offset + a.new_offsets[i]), abs=1e-5)
    # it joins the cluster of its own writer
    assert a.cluster_id is not None
    members = [i for i, c in slip_cluster.items() if c == a.cluster_id]
    assert {int(w[i - 1000]) for i in members} == {int(w[-1])}


def test_calibration_json_keeps_offset_ranks_and_rejects_bad_ones():
    cal = Calibration(
        0.2, 0.1, 30.0, 0.05, offset_ranks=(5, 15), typical_offset=0.4, offset_prior=500.0
    )
    again = Calibration.from_json(cal.to_json())
    assert again == cal and again.offset_ranks == (5, 15) and again.typical_offset == 0.4
    assert again.offset_prior == 500.0
    newer = ("offset_ranks", "typical_offset", "offset_prior")
    older = {k: v for k, v in cal.to_json().items() if k not in newer}
    assert Calibration.from_json(older).offset_ranks is None  # files before normalisation
    assert Calibration.from_json(older).offsets(np.zeros((1, 3)), collection=1) is None
    with pytest.raises(ValueError, match="bad offset_ranks"):
        Calibration.from_json({**cal.to_json(), "offset_ranks": ["a"]})


def test_a_tiny_collection_is_scored_against_the_typical_offset():
    """Two stored slips of one hand and a third: with fewer slips than the offset ranks,
    the missing ranks count at the calibration's typical offset instead of at the writer's
    own (very similar) slips, so the third slip still matches them one to one."""
    x, _ = _font_writers(8, n_writers=2, per_writer=3)
    index = VectorIndex(x.shape[1])
    index.add(np.array([1, 2]), x[:2])  # two slips of writer 0; x[2] is the third
    cal = Calibration(0.2, 0.1, 30.0, 0.05, offset_ranks=DEFAULT_OFFSET_RANKS, typical_offset=0.2)
    a = assign_incremental(x[2], index=index, slip_cluster={}, calibration=cal, k=10)
    assert a.offset == pytest.approx(0.2) and a.new_offsets == pytest.approx({1: 0.2, 2: 0.2})
    for sid, score in a.neighbours:
        assert score == pytest.approx(float(x[2] @ x[sid - 1]) - 0.2, abs=1e-5)
    assert sorted(a.joined_slip_ids) == [1, 2]  # founds a cluster with them
    # without the fill each slip's offset is its furthest neighbour: the writer's own slips
    bare = replace(cal, typical_offset=None)
    b = assign_incremental(x[2], index=index, slip_cluster={}, calibration=bare, k=10)
    assert b.joined_slip_ids == []


def test_batch_clustering_uses_the_normalised_operating_point_incremental_keeps_raw():
    """A model's calibration: raw cosine at the top (incremental assignment, checks) and
    normalised scores for batch clustering (``batch``); cluster_calibrated picks the batch."""
    folds = [_font_writers(1), _font_writers(2)]
    raw = calibrate_clustering(folds)
    both = replace(raw, batch=calibrate_clustering(folds, offset_ranks=DEFAULT_OFFSET_RANKS))
    x, w = _font_writers(3)
    labels_both, conf_both = cluster_calibrated(x, both)
    labels_batch, conf_batch = cluster_calibrated(x, both.batch)  # type: ignore[arg-type]
    assert labels_both.tolist() == labels_batch.tolist()
    np.testing.assert_allclose(conf_both, conf_batch)
    assert clustering_scores(w, labels_both)["pairwise_recall"] > (
        clustering_scores(w, cluster_calibrated(x, raw)[0])["pairwise_recall"] + 0.3
    )
    again = Calibration.from_json(both.to_json())
    assert again == both and again.batch is not None and again.offset_ranks is None
    with pytest.raises(ValueError, match="batch must be an object"):
        Calibration.from_json({**both.to_json(), "batch": 3})


def test_offsets_of_a_small_collection_are_shrunk_towards_the_typical_one():
    """In a collection of n slips a measured offset keeps n / (n + prior) of its weight, the
    rest is the typical offset; a ranking (collection=None) keeps them as measured."""
    cal = Calibration(
        0.2, 0.1, 30.0, 0.05, offset_ranks=(0, 2), typical_offset=0.5, offset_prior=300
    )
    sims = np.array([[0.9, 0.3], [0.8, 0.1]], dtype=np.float32)  # measured 0.6 and 0.45
    np.testing.assert_allclose(cal.offsets(sims, collection=None), [0.6, 0.45], atol=1e-6)
    np.testing.assert_allclose(
        cal.offsets(sims, collection=100), [0.25 * 0.6 + 0.75 * 0.5, 0.25 * 0.45 + 0.75 * 0.5],
        atol=1e-6,
    )  # fmt: skip
    big = cal.offsets(sims, collection=10**6)
    np.testing.assert_allclose(big, [0.6, 0.45], atol=1e-3)
    # without a prior nothing is shrunk
    assert replace(cal, offset_prior=None).offsets(sims, collection=100).tolist() == pytest.approx(
        [0.6, 0.45]
    )


def test_calibration_with_a_prior_records_it_and_shrinks_the_folds():
    folds = [_font_writers(1), _font_writers(2)]
    plain = calibrate_clustering(folds, offset_ranks=DEFAULT_OFFSET_RANKS)
    shrunk = calibrate_clustering(folds, offset_ranks=DEFAULT_OFFSET_RANKS, offset_prior=500.0)
    assert shrunk.offset_prior == 500.0 and plain.offset_prior is None
    assert shrunk.typical_offset == pytest.approx(plain.typical_offset)
    # folds of 360 slips keep only 360/860 of their measured offsets: the operating point
    # moves (it is measured on the shrunk scores)
    assert shrunk.merge_threshold != plain.merge_threshold


def test_ranking_scores_augment_then_normalise():
    x, writers = _font_writers(3)
    cal = replace(Calibration.uncalibrated(0.5), offset_ranks=DEFAULT_OFFSET_RANKS)
    # no augmentation and no offsets: plain cosine
    np.testing.assert_allclose(ranking_scores(x, None, augment=(0, 0.0)), x @ x.T, atol=1e-6)
    # no augmentation, no diffusion: cosine less half of both measured (unshrunk) offsets
    b = score_offsets(knn_graph(x, k=15)[1], DEFAULT_OFFSET_RANKS)
    want = x @ x.T - 0.5 * (b[:, None] + b[None, :])
    got = ranking_scores(x, cal, augment=(0, 0.0), diffusion=None)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # a writer's slips pull each other closer: ranking by writer improves on these
    # font-sharing writers, as it did on validation writers (mAP 0.873 -> 0.906)
    plain = retrieval_scores(got, writers)["map"]
    augmented_only = ranking_scores(x, cal, diffusion=None)
    assert retrieval_scores(augmented_only, writers)["map"] > plain + 0.01
    # diffusion over the neighbour graph adds a little more (validation 0.705 -> 0.719)
    shipped = retrieval_scores(ranking_scores(x, cal), writers)["map"]
    assert shipped > retrieval_scores(augmented_only, writers)["map"]
    assert ranking_scores(x[:1], cal).shape == (1, 1)
    assert ranking_scores(np.zeros((0, 32), np.float32), cal).shape == (0, 0)


def test_diffusion_ranks_a_chain_of_close_slips_above_a_lone_look_alike():
    # slips 0-1-2-3 of one writer drift along a chain (0 and 3 are not alike); slip 4, of
    # another writer, is closer to 0 than 3 is, but close to nothing else
    angles = np.radians([0.0, 25.0, 50.0, 75.0])
    chain = np.stack([np.cos(angles), np.sin(angles), np.zeros(4)], axis=1)
    outsider = np.array([[np.cos(np.radians(60.0)), 0.0, np.sin(np.radians(60.0))]])
    x = np.vstack([chain, outsider])
    sim = x @ x.T
    assert sim[0, 4] > sim[0, 3]
    f = diffused_scores(sim, k=2, alpha=0.8)
    assert f[0, 3] > f[0, 4]
    np.testing.assert_allclose(f, f.T, rtol=1e-5)
    # truncating the power series stays within tol of the exact inverse's order
    dense = diffused_scores(sim, k=2, alpha=0.8, tol=1e-8)
    np.testing.assert_array_equal(np.argsort(-dense[0]), np.argsort(-f[0]))
    assert diffused_scores(sim[:1, :1], k=5, alpha=0.8).shape == (1, 1)


def test_augmented_pulls_each_row_towards_its_neighbours_and_skips_missing_ones():
    x = normalise_rows(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])).astype(np.float32)
    nbr = np.array([[1, -1], [-1, -1], [0, 1]])
    out = augmented(x, nbr, 0.5, chunk=2)  # chunks smaller than the rows
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(out[0], normalise_rows(np.array([[1.0, 0.5]]))[0], atol=1e-6)
    np.testing.assert_allclose(out[1], x[1], atol=1e-6)  # no neighbour: unchanged
    np.testing.assert_allclose(out[2], x[2], atol=1e-6)  # pulled equally both ways


def test_batch_clustering_on_augmented_vectors_links_more_at_the_calibrated_precision():
    folds = [_font_writers(1), _font_writers(2)]
    plain = calibrate_clustering(folds, offset_ranks=DEFAULT_OFFSET_RANKS)
    aug_folds = [(batch_vectors(x, replace(plain, augment=(3, 0.3))), w) for x, w in folds]
    aug = replace(
        calibrate_clustering(aug_folds, offset_ranks=DEFAULT_OFFSET_RANKS), augment=(3, 0.3)
    )
    x, w = _font_writers(3)  # writers neither calibration saw
    at_plain = clustering_scores(w, cluster_calibrated(x, plain)[0])
    at_aug = clustering_scores(w, cluster_calibrated(x, aug)[0])
    # measured: precision 0.986 -> 0.972, recall 0.536 -> 0.731 (held-out generated slips:
    # 1.000 -> 0.972, recall 0.068 -> 0.117): a wrong merge drags neighbours along
    assert at_aug["pairwise_precision"] >= 0.95
    assert at_aug["pairwise_recall"] > at_plain["pairwise_recall"] + 0.1
    # the calibration keeps the augmentation it was measured with
    assert Calibration.from_json(aug.to_json()).augment == (3, 0.3)
    assert Calibration.from_json(plain.to_json()).augment is None
    for bad in ([0, 0.3], [3, -1.0], ["x"]):
        with pytest.raises(ValueError, match="bad augment"):
            Calibration.from_json({**aug.to_json(), "augment": bad})


def _curve(*points: tuple[float, int, int, int]) -> list[dict]:
    return [
        {"threshold": t, "right_pairs": r, "linked_pairs": n, "true_pairs": tp}
        for t, r, n, tp in points
    ]


def test_merge_threshold_is_the_pooled_operating_point_of_the_folds():
    # fold a alone would take 0.3 (precision 0.99); fold b's wrong merges there make the
    # pooled precision 0.90, so 0.4 (pooled 50 / 51 = 0.98) is the operating point
    a = _curve((0.3, 99, 100, 200), (0.4, 40, 40, 200), (0.5, 0, 0, 200))
    b = _curve((0.3, 9, 20, 100), (0.4, 10, 11, 100), (0.5, 0, 0, 100))
    assert _pooled_operating_point([a, b], 0.98) == 0.4
    assert _pooled_operating_point([a], 0.98) == 0.3
    # linking nothing (precision 1 by convention) is no operating point
    assert _pooled_operating_point([_curve((0.5, 0, 0, 10))], 0.98) == 1.0


def test_every_source_of_calibration_slips_must_reach_the_target_precision():
    """Generated slips outnumber the real handwriting in the fit data: pooled, their pairs
    set the operating point (0.3) where the real handwriting's are only 0.90 precise; each
    source with enough true pairs must reach the target on its own (0.4)."""

    def point(t, gen, real):  # (right, linked, true) pairs of each source
        right, linked, true = (g + r for g, r in zip(gen, real, strict=True))
        return {"threshold": t, "right_pairs": right, "linked_pairs": linked,
                "true_pairs": true, "by_domain": {"generated": gen, "unipen": real}}  # fmt: skip

    fold = [
        point(0.3, (990, 1000, 2000), (90, 100, 300)),
        point(0.4, (700, 700, 2000), (60, 61, 300)),
        point(0.5, (100, 100, 2000), (10, 10, 300)),
    ]
    pooled = [{k: v for k, v in p.items() if k != "by_domain"} for p in fold]
    assert _pooled_operating_point([pooled], 0.98) == 0.3  # 1080 / 1100 = 0.982
    assert _pooled_operating_point([fold], 0.98) == 0.4
    # a source with fewer true pairs than MIN_DOMAIN_PAIRS is too small to set it
    few = [dict(p, by_domain={"unipen": (1, 2, 20)}) for p in pooled]
    assert _pooled_operating_point([few], 0.98) == 0.3


def test_calibration_by_source_holds_within_each_source_on_the_folds():
    """The same folds calibrated with and without their slips' sources: with them, both
    thresholds are at least the pooled ones and each source's own pairs reach the target
    at the merge threshold."""
    rng = np.random.default_rng(3)
    folds, sources = [], []
    for seed in (1, 2):
        easy, w_easy = _font_writers(seed)
        hard, w_hard = _font_writers(seed + 10, n_writers=30)
        hard = normalise_rows(hard + 0.08 * rng.standard_normal(hard.shape)).astype(np.float32)
        folds.append((np.vstack([easy, hard]), np.concatenate([w_easy, w_hard + 1000])))
        sources.append(np.array(["easy"] * len(w_easy) + ["hard"] * len(w_hard)))
    kw = {"offset_ranks": DEFAULT_OFFSET_RANKS, "offset_prior": 500.0}
    pooled = calibrate_clustering(folds, **kw)  # type: ignore[arg-type]
    by_source = calibrate_clustering(folds, domains=sources, **kw)  # type: ignore[arg-type]
    assert by_source.merge_threshold > pooled.merge_threshold  # measured: 0.27 against 0.23
    assert by_source.pair_threshold >= pooled.pair_threshold
    # the hard source's 180 slips a fold set the point: a collection is compared with them
    assert pooled.fold_slips == 540.0 and by_source.fold_slips == 180.0

    def hard_pairs(calibration: Calibration) -> tuple[int, int]:
        right = linked = 0
        for (x, w), src in zip(folds, sources, strict=True):
            labels = cluster_calibrated(x, calibration)[0]
            r, n, _ = pair_counts(w[src == "hard"], labels[src == "hard"])
            right, linked = right + r, linked + n
        return right, linked

    right, linked = hard_pairs(pooled)  # measured: 47 of 48 right
    assert right < 0.98 * linked
    right, linked = hard_pairs(by_source)  # measured: 27 of 27
    assert linked > 0 and right >= 0.98 * linked
    with pytest.raises(ValueError, match="one entry per fold"):
        calibrate_clustering(folds, domains=sources[:1], **kw)  # type: ignore[arg-type]


def test_pair_counts_count_right_linked_and_true_pairs():
    # writers 0 0 0 1, clusters {0, 1} {2, 3}: linked 2 pairs, 1 right; writer pairs 3
    assert pair_counts([0, 0, 0, 1], [5, 5, 6, 6]) == (1, 2, 3)
    assert pair_counts([0, 0, 1], [-1, -1, -1]) == (0, 0, 1)  # unclustered: singletons


def test_impostor_tail_matches_a_normals_upper_tail():
    rng = np.random.default_rng(0)
    mean, sd = impostor_tail(rng.normal(-0.3, 0.15, 400_000))  # type: ignore[misc]
    assert mean == pytest.approx(-0.3, abs=0.03) and sd == pytest.approx(0.15, abs=0.01)
    # a heavier (exponential) tail reads as a wider normal than its body suggests
    _, wide = impostor_tail(-0.3 + rng.exponential(0.1, 400_000))  # type: ignore[misc]
    assert wide > 0.3  # its body's sd is 0.1
    assert impostor_tail(rng.normal(0, 1, 9_999)) is None  # too few to read a tail off
    assert impostor_tail(np.zeros(20_000)) is None  # no spread, no tail


def test_thresholds_rise_with_the_collection_keeping_each_slips_false_links():
    """Above the fit folds' size each slip meets more different writers; both thresholds
    rise so that the chance of a different-writer score above them, times the others a slip
    meets, stays what it was in a fold.  Smaller collections keep the fold's thresholds."""
    from scipy.stats import norm

    cal = Calibration(0.45, 0.35, 30.0, 0.3, impostor_tail=(-0.4, 0.2), fold_slips=801.0)
    assert cal.for_collection(801) is cal and cal.for_collection(50) is cal
    previous = cal.merge_threshold
    for n in (1_601, 10_001, 1_000_001):
        at = cal.for_collection(n)
        assert at.merge_threshold > previous and at.pair_threshold > at.merge_threshold
        previous = at.merge_threshold
        for t, t_n in ((0.35, at.merge_threshold), (0.45, at.pair_threshold)):
            expected = norm.sf(t, -0.4, 0.2) * 800
            assert norm.sf(t_n, -0.4, 0.2) * (n - 1) == pytest.approx(expected, rel=1e-6)
        assert at.for_collection(n) == at  # already raised: unchanged
    assert cal.for_collection(1_601).merge_threshold == pytest.approx(
        -0.4 + 0.2 * norm.isf(norm.sf(0.35, -0.4, 0.2) / 2), abs=1e-9
    )
    # a model file without a fitted tail keeps its thresholds at every size
    assert replace(cal, impostor_tail=None).for_collection(10**6).merge_threshold == 0.35
    again = Calibration.from_json(cal.to_json())
    assert again == cal
    older = {k: v for k, v in cal.to_json().items() if k not in ("impostor_tail", "fold_slips")}
    assert Calibration.from_json(older).impostor_tail is None
    with pytest.raises(ValueError, match="bad impostor_tail"):
        Calibration.from_json({**cal.to_json(), "impostor_tail": [0.1, 0.0]})


def test_a_collection_larger_than_the_folds_keeps_its_precision():
    """Folds of 60 writers calibrate the operating point; a collection of 600 writers of the
    same kind holds ten times the look-alikes of each writer.  At the fold's threshold its
    pairwise precision falls below the target; raised for its size it holds (measured:
    0.947 -> 1.000, recall 0.055 -> 0.009; at 60 writers both 0.959 / 0.231)."""
    folds = [_font_writers(1), _font_writers(2)]
    cal = calibrate_clustering(folds, offset_ranks=DEFAULT_OFFSET_RANKS, offset_prior=500.0)
    assert cal.impostor_tail is not None and cal.fold_slips == 360.0
    fixed = replace(cal, impostor_tail=None)
    x, w = _font_writers(5, n_writers=600)
    raised = cluster_calibrated(x, cal)[0]
    held = cluster_calibrated(x, fixed)[0]
    assert clustering_scores(w, held)["pairwise_precision"] < 0.96
    assert clustering_scores(w, raised)["pairwise_precision"] >= 0.98
    assert clustering_scores(w, raised)["pairwise_recall"] > 0
    # a collection of the folds' size clusters as before
    small, _ = _font_writers(5)
    assert (
        cluster_calibrated(small, cal)[0].tolist() == cluster_calibrated(small, fixed)[0].tolist()
    )


def test_a_fold_of_over_4000_slips_reads_its_tail_off_a_sample_of_pairs():
    """Past 4000 slips a fold's pairs are not all scored (only neighbours'); a fixed random
    sample of its pairs stands for them in the different-writer tail."""
    x, w = _font_writers(4, n_writers=700)  # 4200 slips
    cal = calibrate_clustering([(x, w)], k=5)
    sims = x @ x.T
    iu = np.triu_indices(len(w), k=1)
    every = impostor_tail(sims[iu][w[iu[0]] != w[iu[1]]])
    assert cal.impostor_tail is not None and every is not None
    # the two fits agree where thresholds are read off them, beyond the fold's own pairs
    # (the 1e-5 upper quantile; mean and sd alone trade off against each other)
    far = 4.265  # the standard normal's 1e-5 upper quantile
    sampled, whole = cal.impostor_tail[0] + far * cal.impostor_tail[1], every[0] + far * every[1]
    assert sampled == pytest.approx(whole, abs=0.02)
    assert cal.fold_slips == 4200.0
