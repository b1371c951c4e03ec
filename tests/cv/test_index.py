import numpy as np
import pytest

from cv.index import VectorIndex, normalise_rows


def _unit(rng, n, d):
    return normalise_rows(rng.standard_normal((n, d)))


def test_exact_search_returns_self_first_and_pads_short_results():
    x = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=np.float32)
    index = VectorIndex(3)
    index.add([10, 20, 30], x)
    scores, ids = index.search(x[0], 5)
    assert ids.tolist() == [[10, 30, 20, -1, -1]]
    np.testing.assert_allclose(scores[0, :3], [1.0, np.sqrt(0.5), 0.0], atol=1e-6)
    assert np.isneginf(scores[0, 3:]).all()
    assert len(index) == 3 and index.is_exact


def test_add_replaces_an_existing_id():
    index = VectorIndex(2)
    index.add([1, 2], [[1, 0], [0, 1]])
    index.add([1], [[0, 1]])  # id 1 now points where id 2 does
    assert len(index) == 2
    scores, ids = index.search([[1, 0]], 2)
    assert ids.tolist() == [[1, 2]] or ids.tolist() == [[2, 1]]
    np.testing.assert_allclose(scores, [[0.0, 0.0]], atol=1e-6)
    # adding the same data twice changes nothing
    index.add([1, 2], [[0, 1], [0, 1]])
    assert len(index) == 2 and sorted(index.ids.tolist()) == [1, 2]


def test_repeated_id_in_one_call_keeps_the_last_row():
    index = VectorIndex(2)
    index.add([5, 5], [[1, 0], [0, 1]])
    assert len(index) == 1
    np.testing.assert_allclose(index.reconstruct([5]), [[0, 1]], atol=1e-6)


def test_remove_hides_rows_and_ignores_unknown_ids():
    rng = np.random.default_rng(0)
    x = _unit(rng, 50, 8)
    index = VectorIndex(8)
    index.add(np.arange(50), x)
    index.remove([3, 4, 999])
    assert len(index) == 48 and 3 not in index and 5 in index
    _, ids = index.search(x[3], 50)
    assert 3 not in ids[0] and 4 not in ids[0]
    assert (ids[0, :48] >= 0).all() and (ids[0, 48:] == -1).all()


@pytest.mark.parametrize(("kind", "exact_below"), [("hnsw", 0), ("hnsw", 100), ("ivf", 100)])
def test_approximate_index_finds_neighbours_and_survives_removal(kind, exact_below):
    rng = np.random.default_rng(1)
    x = _unit(rng, 400, 16)
    index = VectorIndex(16, exact_below=exact_below, kind=kind, nprobe=64)
    index.add(np.arange(200) + 1000, x[:200])
    index.add(np.arange(200, 400) + 1000, x[200:])
    assert not index.is_exact  # crossed exact_below
    _, ids = index.search(x[:20], 1)
    assert ids[:, 0].tolist() == list(range(1000, 1020))
    index.remove(np.arange(1000, 1150))  # > a quarter dead: compaction rebuilds
    assert len(index) == 250
    _, ids = index.search(x[:5], 10)
    assert (ids >= 1150).all()


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_save_and_load_round_trip(tmp_path, kind):
    rng = np.random.default_rng(2)
    x = _unit(rng, 120, 4)
    index = VectorIndex(4, exact_below=50, kind=kind)
    index.add(np.arange(120), x)
    index.remove([7])
    index.save(tmp_path / "ix.npz")
    back = VectorIndex.load(tmp_path / "ix.npz")
    assert len(back) == 119 and 7 not in back and back.is_exact == index.is_exact
    np.testing.assert_array_equal(back.search(x, 3)[1], index.search(x, 3)[1])


def test_bad_arguments_name_the_parameter():
    index = VectorIndex(3)
    with pytest.raises(ValueError, match="vectors"):
        index.add([1], [[1, 0]])
    with pytest.raises(ValueError, match="ids"):
        index.add([1, 2], [[1, 0, 0]])
    with pytest.raises(ValueError, match="k must"):
        index.search([[1, 0, 0]], 0)
    with pytest.raises(ValueError, match="dim"):
        VectorIndex(0)
    with pytest.raises(ValueError, match="kind"):
        VectorIndex(3, kind="lsh")
