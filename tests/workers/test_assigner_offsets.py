"""The assigner's cache of indexed slips' score offsets (live assignment on normalised
scores)."""

from __future__ import annotations

import numpy as np

from workers import pipeline


def test_the_assigners_offset_cache_is_dropped_as_the_index_grows():
    """Cached score offsets of indexed slips go stale as look-alikes arrive: measured again
    once the index has grown by a quarter (cv.cluster.OFFSETS_REFRESH)."""
    from cv.cluster import Assignment
    from cv.index import VectorIndex

    assigner = pipeline.Assigner("test-version")
    assigner.index = VectorIndex(4)
    rng = np.random.default_rng(3)
    assigner.index.add(np.arange(8), rng.standard_normal((8, 4)).astype(np.float32))
    cache = assigner.known_offsets()
    assigner.remember_offsets(Assignment(None, 0.0, 0.0, offset=0.4, new_offsets={3: 0.2}), 9)
    assert cache == {3: 0.2, 9: 0.4}
    assigner.index.add(np.arange(8, 10), rng.standard_normal((2, 4)).astype(np.float32))
    assert assigner.known_offsets() == {3: 0.2, 9: 0.4}  # 10 slips: within a quarter of 8
    assigner.index.add(np.arange(10, 11), rng.standard_normal((1, 4)).astype(np.float32))
    assert assigner.known_offsets() == {}  # 11 > 1.25 x 8
    assigner.remember_offsets(Assignment(None, 0.0, 0.0, offset=None, new_offsets={}), None)
    assert assigner.known_offsets() == {}
