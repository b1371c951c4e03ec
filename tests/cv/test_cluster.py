import numpy as np
import pytest

from cv.cluster import (
    Assignment,
    ClusterEvent,
    assign_incremental,
    calibrate_threshold,
    cluster_embeddings,
    knn_graph,
    link_customers,
    membership_confidence,
    stable_relabel,
)
from cv.index import VectorIndex, normalise_rows


def _groups(rng, sizes, *, d=16, noise=0.05, lone=0):
    """Tight groups around orthogonal axes, then `lone` vectors on further axes."""
    rows, truth = [], []
    for g, size in enumerate(sizes):
        for _ in range(size):
            v = np.zeros(d)
            v[g] = 1.0
            rows.append(v + noise * rng.standard_normal(d))
            truth.append(g)
    for j in range(lone):
        v = np.zeros(d)
        v[len(sizes) + j] = 1.0
        rows.append(v)
        truth.append(-1)
    return normalise_rows(np.array(rows)), np.array(truth)


@pytest.mark.parametrize("linkage", ["average", "single"])
def test_three_tight_groups_and_a_lone_vector(linkage):
    rng = np.random.default_rng(0)
    x, _ = _groups(rng, [3, 4, 3], lone=1)
    labels = cluster_embeddings(x, threshold=0.8, k=4, linkage=linkage)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, -1]
    assert labels.dtype == np.int64


def test_min_cluster_size_and_empty_input():
    rng = np.random.default_rng(1)
    x, _ = _groups(rng, [2, 5])
    labels = cluster_embeddings(x, threshold=0.8, k=3, min_cluster_size=3)
    assert labels.tolist() == [-1, -1, 0, 0, 0, 0, 0]
    assert cluster_embeddings(np.zeros((0, 4)), threshold=0.5).shape == (0,)


def test_knn_graph_excludes_self_even_with_duplicates():
    x = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    nbr, sim = knn_graph(x, k=2)
    assert nbr.tolist() == [[1, 2], [0, 2], [0, 1]] or nbr[2].tolist() == [1, 0]
    assert (nbr != np.arange(3)[:, None]).all()
    np.testing.assert_allclose(sim[:2, 0], [1.0, 1.0], atol=1e-6)
    nbr, sim = knn_graph(x[:2], k=3)
    assert nbr.tolist() == [[1, -1, -1], [0, -1, -1]]
    assert np.isneginf(sim[:, 1:]).all()


@pytest.mark.parametrize("linkage", ["average", "single"])
def test_cannot_link_splits_a_group_and_must_link_joins(linkage):
    rng = np.random.default_rng(2)
    x, _ = _groups(rng, [4, 3], lone=1)
    base = cluster_embeddings(x, threshold=0.8, k=4, linkage=linkage)
    assert base[0] == base[3]
    labels = cluster_embeddings(x, threshold=0.8, k=4, cannot_link=[(0, 3)], linkage=linkage)
    assert labels[0] != labels[3] or labels[0] == -1
    assert labels[4] == labels[5] == labels[6] >= 0  # the other group is untouched
    labels = cluster_embeddings(x, threshold=0.8, k=4, must_link=[(7, 4)], linkage=linkage)
    assert labels[7] == labels[4] >= 0  # the lone vector is held in by the human link


def test_contradictory_constraints_raise():
    rng = np.random.default_rng(3)
    x, _ = _groups(rng, [3])
    with pytest.raises(ValueError, match="must_link and cannot_link"):
        cluster_embeddings(x, threshold=0.8, k=2, must_link=[(0, 1), (1, 2)], cannot_link=[(0, 2)])
    with pytest.raises(ValueError, match="cannot_link"):
        cluster_embeddings(x, threshold=0.8, k=2, cannot_link=[(0, 9)])
    with pytest.raises(ValueError, match="threshold"):
        cluster_embeddings(x, threshold=1.5)


def test_average_linkage_joins_two_parts_of_one_writer_without_knn_edges():
    # one writer on two printed forms: each slip's k neighbours lie in its own form,
    # but the two parts' centroids are close (cluster-level candidates)
    rng = np.random.default_rng(4)
    d = 32
    writer = np.zeros(d)
    writer[0] = 1.0
    form_a, form_b = np.zeros(d), np.zeros(d)
    form_a[1], form_b[2] = 0.8, 0.8
    rows = [writer + f + 0.05 * rng.standard_normal(d) for f in [form_a] * 6 + [form_b] * 6]
    other = np.zeros(d)
    other[3] = 1.0
    rows += [other + form_a + 0.05 * rng.standard_normal(d) for _ in range(6)]
    x = normalise_rows(np.array(rows))
    labels = cluster_embeddings(x, threshold=0.55, k=3)
    assert labels.tolist() == [0] * 12 + [1] * 6


def test_recluster_keeps_ids_and_honours_human_links():
    rng = np.random.default_rng(5)
    x, _ = _groups(rng, [4, 3, 3], lone=1)
    slip_ids = np.arange(100, 100 + len(x))
    must, cannot = [(10, 0)], [(4, 6)]  # rows
    labels = cluster_embeddings(x, threshold=0.8, k=4, must_link=must, cannot_link=cannot)
    first, _ = stable_relabel(
        {}, dict(zip(slip_ids.tolist(), labels.tolist(), strict=True)), next_id=1
    )
    again = cluster_embeddings(x, threshold=0.8, k=4, must_link=must, cannot_link=cannot)
    second, events = stable_relabel(
        first,
        dict(zip(slip_ids.tolist(), again.tolist(), strict=True)),
        next_id=max(first.values()) + 1,
    )
    assert second == first and events == []
    assert second[110] == second[100] >= 1
    assert second[104] != second[106] or second[104] == -1


def test_stable_relabel_unchanged_partition_keeps_ids():
    old = {1: 7, 2: 7, 3: 9, 4: 9, 5: -1}
    new = {1: 0, 2: 0, 3: 1, 4: 1, 5: -1}
    mapping, events = stable_relabel(old, new, next_id=10)
    assert mapping == old and events == []


def test_stable_relabel_grown_and_created():
    old = {1: 7, 2: 7}
    new = {1: 5, 2: 5, 3: 5, 4: 2, 6: 2}
    mapping, events = stable_relabel(old, new, next_id=10)
    assert mapping == {1: 7, 2: 7, 3: 7, 4: 10, 6: 10}
    assert events == [
        ClusterEvent("grown", 7, (), (3,)),
        ClusterEvent("created", 10, (), (4, 6)),
    ]


def test_stable_relabel_merge_keeps_larger_id():
    old = {1: 3, 2: 3, 3: 8, 4: 8, 5: 8}
    new = {s: 0 for s in old}
    mapping, events = stable_relabel(old, new, next_id=20)
    assert set(mapping.values()) == {8}
    assert ClusterEvent("merged", 8, (3,), (1, 2)) in events
    assert ClusterEvent("absorbed", 3, (8,), (1, 2)) in events


def test_stable_relabel_split_larger_part_keeps_id_and_dissolved():
    old = {1: 4, 2: 4, 3: 4, 4: 4, 5: 4, 6: 6, 7: 6}
    new = {1: 0, 2: 0, 3: 1, 4: 1, 5: 1, 6: -1, 7: -1}
    mapping, events = stable_relabel(old, new, next_id=11)
    assert mapping == {1: 11, 2: 11, 3: 4, 4: 4, 5: 4, 6: -1, 7: -1}
    assert ClusterEvent("split", 4, (11,)) in events
    assert ClusterEvent("created", 11, (4,), (1, 2)) in events
    assert ClusterEvent("dissolved", 6, (), (6, 7)) in events


def _index_with(x, ids):
    index = VectorIndex(x.shape[1])
    index.add(ids, x)
    return index


def test_assign_joins_cluster_above_threshold_only():
    # three members at cosine 0.7 from the query direction e0
    d = 4
    members = []
    for j in (1, 2, 3):
        v = np.zeros(d)
        v[0], v[j] = 0.7, np.sqrt(1 - 0.49)
        members.append(v)
    x = np.array(members, dtype=np.float32)
    index = _index_with(x, [11, 12, 13])
    q = np.array([1, 0, 0, 0], dtype=np.float32)
    slip_cluster = {11: 5, 12: 5, 13: 5}
    a = assign_incremental(q, index=index, slip_cluster=slip_cluster, threshold=0.69, k=3)
    assert a.cluster_id == 5 and a.confidence > 0.5 and a.joined_slip_ids == []
    assert a.evidence == pytest.approx(0.7, abs=1e-5)
    assert [i for i, _ in a.neighbours] == [11, 12, 13] or len(a.neighbours) == 3
    b = assign_incremental(q, index=index, slip_cluster=slip_cluster, threshold=0.71, k=3)
    assert b.cluster_id is None and b.confidence < 0.5 and not b.starts_cluster
    c = assign_incremental(
        q, index=index, slip_cluster=slip_cluster, threshold=0.69, k=3, cannot_link_clusters={5}
    )
    assert c.cluster_id is None


def test_assign_discounts_a_single_lucky_match_to_a_large_cluster():
    d = 8
    rng = np.random.default_rng(6)
    q = np.zeros(d)
    q[0] = 1.0
    near = q * 0.9 + np.sqrt(1 - 0.81) * np.eye(d)[1]  # one member at cosine 0.9
    far = normalise_rows(np.eye(d)[2:6] + 0.01 * rng.standard_normal((4, d)))
    x = np.vstack([near[None], far]).astype(np.float32)
    index = _index_with(x, [1, 2, 3, 4, 5])
    clusters = {1: 3, 2: 9, 3: 9, 4: 9, 5: 9}
    seen_only = assign_incremental(q, index=index, slip_cluster=clusters, threshold=0.8, k=3)
    assert seen_only.cluster_id == 3  # size unknown: one member seen, 0.9 >= 0.8
    sized = assign_incremental(
        q, index=index, slip_cluster=clusters, threshold=0.8, k=3, cluster_sizes={3: 40, 9: 4}
    )
    assert sized.cluster_id is None  # 39 members unseen count at the 3rd neighbour's score


def test_assign_with_members_averages_the_whole_cluster():
    # a cluster of six: three members near the query (cosine ~0.96), three far from it
    # (~-0.45).  Its top three pass 0.5; its average over all six (~0.26) does not, and the
    # merge threshold is calibrated on that average (batch average linkage).
    d = 8
    e = np.eye(d)
    near = [e[0] + 0.3 * e[j] for j in (1, 2, 3)]
    far = [-0.5 * e[0] + e[j] for j in (4, 5, 6)]
    x = normalise_rows(np.array(near + far)).astype(np.float32)
    ids = [31, 32, 33, 34, 35, 36]
    index = _index_with(x, ids)
    clusters = dict.fromkeys(ids, 7)
    kwargs = dict(index=index, slip_cluster=clusters, threshold=0.5, k=6, cluster_sizes={7: 6})
    q = e[0].astype(np.float32)
    top_only = assign_incremental(q, **kwargs)
    assert top_only.cluster_id == 7
    assert top_only.evidence == pytest.approx(float(x[:3].dot(q).mean()), abs=1e-5)
    whole = assign_incremental(q, **kwargs, cluster_members={7: ids})
    assert whole.cluster_id is None and whole.confidence < 0.5
    assert whole.evidence == pytest.approx(float(x.dot(q).mean()), abs=1e-5)
    # a cluster of its three near members only: the average is theirs, and it joins
    tight = assign_incremental(q, **kwargs, cluster_members={7: ids[:3]})
    assert tight.cluster_id == 7
    assert tight.evidence == pytest.approx(float(x[:3].dot(q).mean()), abs=1e-5)


def test_assign_starts_a_cluster_with_unclustered_neighbours():
    x = normalise_rows(np.array([[1, 0.1, 0], [1, 0, 0.1], [0, 0, 1]]))
    index = _index_with(x, [21, 22, 23])
    a = assign_incremental(
        np.array([1, 0, 0]), index=index, slip_cluster={23: 4}, threshold=0.9, k=3
    )
    assert isinstance(a, Assignment)
    assert a.cluster_id is None and a.starts_cluster and sorted(a.joined_slip_ids) == [21, 22]
    # the slip itself, already indexed, is skipped
    b = assign_incremental(x[0], index=index, slip_cluster={}, threshold=0.9, k=1, slip_id=21)
    assert [i for i, _ in b.neighbours] == [22]


def test_link_customers_attribution_and_candidate_links():
    slip_cluster = {1: 0, 2: 0, 3: 0, 4: 1, 5: 1, 6: 1, 7: -1}
    slip_customer = {1: 7, 2: 7, 3: None, 4: 7, 5: 8, 6: None, 7: 9}
    out = link_customers(slip_cluster, slip_customer, confidence={3: 0.9, 6: 0.8})
    assert set(out) == {0, 1}
    assert out[0].customers == {7: 2} and not out[0].candidate_link
    assert [(a.slip_id, a.customer_id, a.confidence) for a in out[0].attributed] == [(3, 7, 0.9)]
    assert out[1].customers == {7: 1, 8: 1} and out[1].candidate_link
    assert [(a.slip_id, a.customer_id, a.confidence) for a in out[1].attributed] == [(6, 7, 0.4)]


def test_anonymous_slip_by_known_writer_is_attributed_end_to_end():
    rng = np.random.default_rng(7)
    x, truth = _groups(rng, [4, 4], lone=1)
    slip_ids = list(range(1, len(x) + 1))
    # writer 0's slips are customer 42's except one anonymous; writer 1 bets anonymously
    customers = {s: (42 if t == 0 else None) for s, t in zip(slip_ids, truth.tolist(), strict=True)}
    customers[4] = None
    nb = knn_graph(x, k=4)
    labels = cluster_embeddings(x, threshold=0.8, neighbours=nb)
    conf = membership_confidence(None, labels, threshold=0.8, neighbours=nb)
    assert (conf[labels >= 0] > 0.9).all() and conf[labels < 0].tolist() == [0.0]
    out = link_customers(
        dict(zip(slip_ids, labels.tolist(), strict=True)),
        customers,
        confidence=dict(zip(slip_ids, conf.tolist(), strict=True)),
    )
    cid = int(labels[3])
    assert [a.slip_id for a in out[cid].attributed] == [4]
    assert out[cid].attributed[0].customer_id == 42 and out[cid].attributed[0].confidence > 0.9
    assert out[int(labels[4])].customers == {} and out[int(labels[4])].attributed == []


def test_calibrate_threshold_reaches_target_precision():
    rng = np.random.default_rng(8)
    d, rows, writers = 24, [], []
    centres = normalise_rows(rng.standard_normal((30, d)))
    for w in range(30):
        for _ in range(int(rng.integers(1, 6))):
            rows.append(centres[w] + 0.15 * rng.standard_normal(d))
            writers.append(w)
    x = normalise_rows(np.array(rows))
    res = calibrate_threshold(x, np.array(writers), k=5, thresholds=np.arange(0.3, 0.96, 0.05))
    assert res["threshold"] is not None
    assert res["pairwise_precision"] >= 0.98 and res["pairwise_recall"] > 0.9
    assert len(res["curve"]) == 14


@pytest.mark.parametrize("linkage", ["average", "single"])
def test_random_constraints_are_always_honoured(linkage):
    rng = np.random.default_rng(9)
    x, truth = _groups(rng, [8] * 10, d=32, noise=0.1)
    # cannot-links inside groups, must-links across groups: both fight the data
    cannot = [(int(g * 8 + a), int(g * 8 + b)) for g in range(10) for a, b in [(0, 1), (2, 5)]]
    must = [(3, 11), (20, 60), (45, 77)]
    labels = cluster_embeddings(
        x, threshold=0.5, k=6, must_link=must, cannot_link=cannot, linkage=linkage
    )
    for a, b in must:
        assert labels[a] == labels[b] >= 0
    for a, b in cannot:
        assert labels[a] == -1 or labels[a] != labels[b]
    # without constraints the groups come out whole
    free = cluster_embeddings(x, threshold=0.5, k=6, linkage=linkage)
    assert len(set(free.tolist())) == 10 and (free >= 0).all()
