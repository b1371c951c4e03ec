"""Retrieval metrics on hand-computed cases, including scoring only some queries."""

from __future__ import annotations

import numpy as np
import pytest

from cv.metrics import retrieval_scores


def _similarity() -> np.ndarray:
    # items 0,1 by writer a; 2,3 by writer b; item 2's nearest neighbour is item 0 (a miss)
    return np.array(
        [
            [1.0, 0.9, 0.2, 0.1],
            [0.9, 1.0, 0.1, 0.3],
            [0.8, 0.1, 1.0, 0.5],
            [0.1, 0.2, 0.6, 1.0],
        ]
    )


def test_every_item_is_a_query_by_default():
    r = retrieval_scores(_similarity(), ["a", "a", "b", "b"])
    # queries 0, 1, 3 find their pair first (AP 1); query 2 finds it second (AP 1/2)
    assert r["queries"] == 4
    assert r["map"] == pytest.approx((1 + 1 + 0.5 + 1) / 4)
    assert r["top1"] == pytest.approx(0.75)


def test_a_query_subset_searches_the_whole_gallery():
    writers = ["a", "a", "b", "b"]
    only_b = retrieval_scores(_similarity(), writers, queries=[False, False, True, True])
    assert only_b["queries"] == 2
    # item 2 still meets item 0 (not a query) first in its ranking
    assert only_b["map"] == pytest.approx(0.75)
    assert only_b["top1"] == pytest.approx(0.5)


def test_a_query_mask_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="queries"):
        retrieval_scores(np.eye(3), ["a", "a", "b"], queries=[True, False])
