"""Clustering calibration: the slip-to-slip pair threshold and the cluster-merge threshold are
measured separately on labelled fit data, and confidences are calibrated probabilities."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from cv.cluster import (
    DEFAULT_TEMPERATURE,
    Calibration,
    assign_incremental,
    calibrate_clustering,
    calibration_of,
    cluster_embeddings,
    confidence_from_evidence,
    distinct_writers_bound,
    replay_arrivals,
    replayed_pair_counts,
)
from cv.index import VectorIndex, normalise_rows
from cv.metrics import clustering_scores, pair_counts


def _writers(seed: int, n_writers: int, per_writer: int, *, d: int = 24, noise: float = 0.15):
    """Slips of writers around random directions, noisy enough that single slip pairs of one
    writer and of two writers overlap in similarity (as real handwriting features do)."""
    rng = np.random.default_rng(seed)
    centres = normalise_rows(rng.standard_normal((n_writers, d)))
    writers = np.repeat(np.arange(n_writers), per_writer)
    x = centres[writers] + noise * rng.standard_normal((writers.size, d))
    return normalise_rows(x).astype(np.float32), writers


@pytest.fixture(scope="module")
def calibration() -> Calibration:
    folds = [_writers(1, 60, 6), _writers(2, 60, 6)]
    return calibrate_clustering(folds, target_precision=0.98)


def test_pair_and_merge_thresholds_are_separate_operating_points(calibration):
    c = calibration
    assert c.calibrated and c.target_precision == 0.98
    assert -1.0 < c.pair_threshold < 1.0 and -1.0 < c.merge_threshold < 1.0
    # an average over several slip pairs is less noisy than one pair: clusters can merge at
    # a lower average similarity than a lone pair needs for the same precision
    assert c.merge_threshold < c.pair_threshold - 0.02
    assert c.recall is not None and c.recall > 0.5
    # held-out writers clustered at the merge threshold stay near the target precision
    # and recall far more than clustering at the pair threshold does
    x, w = _writers(3, 60, 6)
    at_merge = clustering_scores(w, cluster_embeddings(x, threshold=c.merge_threshold))
    at_pair = clustering_scores(w, cluster_embeddings(x, threshold=c.pair_threshold))
    assert at_merge["pairwise_precision"] >= 0.9
    assert at_merge["pairwise_recall"] > at_pair["pairwise_recall"] + 0.1


def test_confidence_is_a_calibrated_probability(calibration):
    """Of the held-out slips a calibrated confidence puts in a bin, about that share joined
    their own writer; the fixed logistic (0.5 at the threshold) is far off."""
    x, w = _writers(4, 60, 6)
    index = VectorIndex(x.shape[1])
    slip_cluster: dict[int, int] = {}
    sizes: dict[int, int] = {}
    # every writer's first four slips are clustered; the last two of each are assigned
    for i in np.flatnonzero(np.arange(w.size) % 6 < 4):
        index.add(np.array([i]), x[i : i + 1])
        slip_cluster[int(i)] = int(w[i])
        sizes[int(w[i])] = sizes.get(int(w[i]), 0) + 1
    confidences, right = [], []
    for i in np.flatnonzero(np.arange(w.size) % 6 >= 4):
        a = assign_incremental(
            x[i],
            index=index,
            slip_cluster=slip_cluster,
            calibration=calibration,
            cluster_sizes=sizes,
        )
        if a.cluster_id is not None:
            confidences.append(a.confidence)
            right.append(a.cluster_id == int(w[i]))
    conf, ok = np.array(confidences), np.array(right)
    assert conf.size > 60
    sure = conf >= 0.9
    assert sure.sum() > 20 and ok[sure].mean() >= 0.85
    # mean confidence tracks the share right (a probability, not a score)
    assert abs(conf.mean() - ok.mean()) < 0.12
    assert (conf >= 0.5).all()  # a join clears the merge threshold


def test_a_rescan_of_a_clustered_slip_is_confidently_linked(calibration):
    x, w = _writers(5, 30, 6)
    index = VectorIndex(x.shape[1])
    index.add(np.arange(w.size), x)
    slip_cluster = {i: int(w[i]) for i in range(w.size)}
    rescan = normalise_rows(x[7:8] + 0.02 * np.random.default_rng(6).standard_normal((1, 24)))
    a = assign_incremental(
        rescan[0],
        index=index,
        slip_cluster=slip_cluster,
        calibration=calibration,
        cluster_sizes={c: 6 for c in range(30)},
    )
    assert a.cluster_id == int(w[7])
    # above rule 1's 0.9 floor: no longer a 0.65 "possible match"
    assert a.confidence >= 0.9


def test_two_lone_slips_found_a_cluster_only_at_the_pair_threshold():
    cal = Calibration(pair_threshold=0.9, merge_threshold=0.5, slope=20.0, midpoint=0.6)
    index = VectorIndex(2)
    index.add(np.array([1]), np.array([[1.0, 0.0]], dtype=np.float32))
    close = normalise_rows(np.array([[1.0, 0.3]]))[0]  # cosine 0.958 with slip 1
    far = normalise_rows(np.array([[1.0, 1.0]]))[0]  # cosine 0.707: above merge, below pair
    found = assign_incremental(close, index=index, slip_cluster={}, calibration=cal)
    assert found.starts_cluster and found.joined_slip_ids == [1]
    alone = assign_incremental(far, index=index, slip_cluster={}, calibration=cal)
    assert not alone.starts_cluster and alone.cluster_id is None


def test_the_one_to_one_threshold_rises_with_the_slips_searched():
    """A pair at cosine 0.5 clears the fold-calibrated 0.45 among 3 stored slips but not
    among 51, and the assignment reports the threshold it used (the counter check lists its
    one-to-one matches at it)."""
    cal = Calibration(0.45, 0.35, 30.0, 0.3, impostor_tail=(-0.4, 0.2), fold_slips=3.0)
    e = np.eye(16, dtype=np.float32)
    query = normalise_rows(e[:1] + np.sqrt(3.0) * e[1:2])[0]  # cosine 0.5 with slip 1
    for others in (2, 50):
        index = VectorIndex(16)
        far = np.zeros((others, 16), np.float32)
        far[:, 2 + np.arange(others) % 14] = 1.0  # orthogonal to the query
        index.add(np.arange(1, others + 2), np.vstack([e[:1], far]))
        found = assign_incremental(query, index=index, slip_cluster={}, calibration=cal)
        assert found.pair_threshold == pytest.approx(cal.for_collection(others + 1).pair_threshold)
        assert found.joined_slip_ids == ([1] if others == 2 else [])
    assert found.pair_threshold > 0.5


def test_uncalibrated_models_keep_the_single_threshold_behaviour():
    cal = calibration_of(SimpleNamespace(threshold_=0.62))
    assert not cal.calibrated and cal.pair_threshold == cal.merge_threshold == 0.62
    e = np.array([0.5, 0.62, 0.7])
    np.testing.assert_allclose(
        cal.confidence(e),
        confidence_from_evidence(e, threshold=0.62, temperature=DEFAULT_TEMPERATURE),
    )
    assert calibration_of(SimpleNamespace(threshold_=1.0)).merge_threshold == 0.5  # placeholder
    assert calibration_of(object()).merge_threshold == 0.5


def test_calibration_round_trips_through_json_and_the_model_attribute(calibration):
    again = Calibration.from_json(calibration.to_json())
    assert again == calibration
    model = SimpleNamespace(threshold_=0.99, calibration_=calibration.to_json())
    assert calibration_of(model) == calibration
    with pytest.raises(ValueError, match="calibration: missing or bad field"):
        Calibration.from_json({"pair_threshold": 0.5})
    with pytest.raises(ValueError, match="at least 3 slips from 2\\+ writers"):
        calibrate_clustering([(np.eye(2, dtype=np.float32), np.array(["a", "a"]))])


def test_the_different_writers_bound_is_where_few_writers_halves_fall():
    """One writer's slips split in alternate halves score their mean cosine; the bound is the
    2.5 % point of a normal matched to those, in the source whose writers vary most."""
    tight, tight_w = _writers(3, 40, 6, noise=0.15)
    loose, loose_w = _writers(4, 40, 6, noise=0.6)
    bound_tight = distinct_writers_bound([(tight, tight_w)])
    bound_loose = distinct_writers_bound([(loose, loose_w)])
    assert bound_tight is not None and bound_loose is not None
    assert bound_loose < bound_tight
    halves = [
        float(tight[rows[0::2]].mean(0) @ tight[rows[1::2]].mean(0))
        for rows in (np.flatnonzero(tight_w == w) for w in range(40))
    ]
    assert np.mean(np.array(halves) < bound_tight) <= 0.025 + 1e-9
    # two sources in one fold: the looser one sets the bound
    both = np.vstack([tight, loose])
    writers = np.concatenate([tight_w, loose_w + 100])
    domains = np.array(["tight"] * len(tight) + ["loose"] * len(loose))
    assert distinct_writers_bound([(both, writers)], domains=[domains]) == pytest.approx(
        bound_loose
    )
    # too few writers with 4+ slips: no bound
    assert distinct_writers_bound([(tight[:57], tight_w[:57])]) is None
    assert distinct_writers_bound([_writers(5, 40, 3)]) is None


def test_the_different_writers_bound_round_trips_and_old_files_read_as_none(calibration):
    from dataclasses import replace

    with_bound = replace(calibration, distinct_writers=0.197)
    assert Calibration.from_json(with_bound.to_json()) == with_bound
    # a calibration without one keeps its old JSON (and so its registry digest)
    assert "distinct_writers" not in calibration.to_json()
    assert Calibration.from_json(calibration.to_json()).distinct_writers is None
    with pytest.raises(ValueError, match="bad distinct_writers"):
        Calibration.from_json(calibration.to_json() | {"distinct_writers": 3.0})


def test_live_points_round_trip_and_older_files_have_none(calibration):
    from dataclasses import replace

    live = replace(calibration, offset_ranks=(5, 15), typical_offset=0.35, offset_prior=500.0)
    both = replace(calibration, live=live)
    assert Calibration.from_json(both.to_json()) == both
    assert "live" not in calibration.to_json()  # older files keep their JSON and digests
    assert Calibration.from_json(calibration.to_json()).live is None
    with pytest.raises(ValueError, match="live must be an object"):
        Calibration.from_json(calibration.to_json() | {"live": 0.3})


def test_replayed_arrivals_link_each_writer_and_leave_strangers_alone():
    x, w = _writers(7, 12, 5, noise=0.02)  # writers far apart, slips of one writer close
    stranger = normalise_rows(np.random.default_rng(8).standard_normal((1, x.shape[1])))
    x, w = np.vstack([x, stranger]).astype(np.float32), np.append(w, -1)
    cal = Calibration.uncalibrated(0.8)
    for seed in range(3):
        labels = replay_arrivals(x, cal, np.random.default_rng(seed).permutation(len(w)))
        assert labels[-1] == -1
        right, linked, true_pairs = pair_counts(w[:-1], labels[:-1])
        assert right == linked == true_pairs  # every writer whole, no two writers together
    # pooled over orders; a row left out of the replay stays alone but keeps its true pairs
    twin = np.vstack([x, x[:1]]).astype(np.float32)  # one more slip of writer 0
    w2 = np.append(w, w[0])
    usable = np.ones(len(w2), dtype=bool)
    assert replayed_pair_counts(twin, w2, cal, orders=2, usable=usable) == (250, 250, 250)
    usable[-1] = False
    assert replayed_pair_counts(twin, w2, cal, orders=2, usable=usable) == (240, 240, 250)
