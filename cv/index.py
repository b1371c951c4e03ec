"""Cosine-similarity vector index over slip embeddings, keyed by int64 slip ids.

Exact search (faiss ``IndexFlatIP``) while the index is small; once it holds ``exact_below``
rows or more, an approximate index: an HNSW graph (Malkov & Yashunin 2018, faiss
``IndexHNSWFlat``; the default, no training, good for a live index that grows one slip at a
time) or an inverted file (faiss ``IndexIVFFlat``, k-means coarse quantiser trained on the
rows at the switch; builds in seconds, the choice for batch kNN graphs over 10^6 rows).
Rows are L2-normalised on the way in, so inner product = cosine similarity.

Approximate indexes cannot cheaply delete, so removal and replacement use tombstones: the
faiss index keeps the row, a boolean mask hides it from results, and the index is rebuilt
from its own stored vectors when more than a quarter of its rows are dead.  Searches
over-fetch by the number of dead rows they may meet (bounded by that quarter) and retry
wider when a query comes back short.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["VectorIndex", "normalise_rows"]

_FORMAT_VERSION = 1
# compact when this share of the faiss rows are tombstones
_MAX_DEAD_FRACTION = 0.25
# searches with at most this many queries run single-threaded
_SMALL_BATCH = 8


def normalise_rows(vectors: ArrayLike, *, name: str = "vectors") -> NDArray[np.float32]:
    """L2-normalise the rows of a 2-D array (zero rows stay zero).

    Parameters
    ----------
    vectors : (m, d) array_like
    name : str
        Parameter name used in error messages.

    Returns
    -------
    (m, d) float32, C-contiguous, rows of unit length: a new array, or ``vectors`` itself
    when it already is one (callers must not modify the result in place).
    """
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, dim), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if x is not vectors or np.abs(norms - 1.0).max(initial=0.0) > 1e-4:
        return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)
    # already unit float32 rows: no copy (10^6 x 128 rows are 0.5 GB)
    return x


class VectorIndex:
    """Cosine nearest-neighbour index with int64 external ids (slip ids).

    Parameters
    ----------
    dim : int
        Embedding dimension.
    exact_below : int
        Exact brute-force search while fewer rows than this are stored; the index switches to
        HNSW (once, it never switches back) when it reaches this size.  Single-query flat search
        on this 2-core machine measured ~0.3 ms at 10k rows but 16-48 ms at 50k-100k, too slow
        for the 10 ms assignment budget, hence 20k.
    kind : {"hnsw", "ivf"}
        The approximate index used from ``exact_below`` rows on.
    hnsw_m : int
        HNSW links per node.
    ef_construction, ef_search : int
        HNSW beam widths for building and searching.
    nlist : int, optional
        IVF lists; default about 4·sqrt(n) at the switch.
    nprobe : int
        IVF lists scanned per query.

    Notes
    -----
    ``add`` replaces: adding an id that is already present overwrites its vector, so re-running
    an embedding task is harmless.  ``remove`` ignores ids that are not present.
    """

    def __init__(
        self,
        dim: int,
        *,
        exact_below: int = 20_000,
        hnsw_m: int = 32,
        ef_construction: int = 40,
        ef_search: int = 64,
        kind: str = "hnsw",
        nlist: int | None = None,
        nprobe: int = 16,
    ) -> None:
        if int(dim) < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if int(exact_below) < 0:
            raise ValueError(f"exact_below must be >= 0, got {exact_below}")
        if kind not in ("hnsw", "ivf"):
            raise ValueError(f"kind must be 'hnsw' or 'ivf', got {kind!r}")
        if nlist is not None and int(nlist) < 1:
            raise ValueError(f"nlist must be >= 1, got {nlist}")
        if int(nprobe) < 1:
            raise ValueError(f"nprobe must be >= 1, got {nprobe}")
        if int(hnsw_m) < 2:
            raise ValueError(f"hnsw_m must be >= 2, got {hnsw_m}")
        self.dim = int(dim)
        self.exact_below = int(exact_below)
        self.hnsw_m = int(hnsw_m)
        self.ef_construction = int(ef_construction)
        self.ef_search = int(ef_search)
        self.kind = kind
        self.nlist = None if nlist is None else int(nlist)
        self.nprobe = int(nprobe)
        # Any: the faiss stubs do not know IndexHNSWFlat's attributes.  An IVF index needs
        # training rows, so it starts flat and switches at the first add.
        start_approx = self.exact_below == 0 and kind == "hnsw"
        self._index: Any = self._new_index(approx=start_approx)
        self._row_ids = np.empty(0, dtype=np.int64)  # faiss row -> external id
        self._alive = np.empty(0, dtype=bool)  # faiss row -> not tombstoned
        self._row_of: dict[int, int] = {}  # external id -> faiss row (alive rows only)

    # -- construction ---------------------------------------------------------------------
    def _new_index(self, *, approx: bool, train: NDArray[np.float32] | None = None) -> Any:
        if not approx:
            return faiss.IndexFlatIP(self.dim)
        if self.kind == "hnsw":
            hnsw: Any = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = self.ef_construction
            hnsw.hnsw.efSearch = self.ef_search
            return hnsw
        assert train is not None and len(train) > 0
        n = len(train)
        # ~4 sqrt(n) lists, each with >= 39 training rows (faiss's k-means minimum)
        nlist = self.nlist or int(np.clip(4 * np.sqrt(n), 1, 65_536))
        nlist = max(1, min(nlist, n // 39 or 1))
        quantizer: Any = faiss.IndexFlatIP(self.dim)
        index: Any = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.own_fields = True
        quantizer.this.disown()
        rng = np.random.default_rng(0)
        # 40 rows per list and 10 k-means iterations: training on 1M rows x 4000 lists with
        # faiss's defaults (256 rows, 25 iterations) would take minutes on 2 cores
        m = 40 * nlist
        sample = train if n <= m else train[np.sort(rng.choice(n, m, replace=False))]
        index.cp.niter = 10
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
        index.nprobe = self.nprobe
        index.make_direct_map()  # lets reconstruct() read rows back for rebuilds
        return index

    @property
    def is_exact(self) -> bool:
        """True while searches are brute force (exact)."""
        return isinstance(self._index, faiss.IndexFlat)

    def __len__(self) -> int:
        return len(self._row_of)

    def __contains__(self, slip_id: object) -> bool:
        try:
            return int(slip_id) in self._row_of  # type: ignore[call-overload]
        except (TypeError, ValueError):
            return False

    @property
    def ids(self) -> NDArray[np.int64]:
        """(n,) int64 ids currently stored, in insertion order."""
        return self._row_ids[self._alive].copy()

    def add(self, ids: ArrayLike, vectors: ArrayLike) -> None:
        """Add or replace vectors.

        Parameters
        ----------
        ids : (m,) int array_like
            External ids.  An id already present is replaced; within one call the last
            occurrence of a repeated id wins.
        vectors : (m, dim) array_like
            Rows are L2-normalised before storing.
        """
        id_arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        x = normalise_rows(vectors, name="vectors")
        if x.shape[1] != self.dim:
            raise ValueError(f"vectors must have {self.dim} columns, got {x.shape[1]}")
        if x.shape[0] != id_arr.shape[0]:
            raise ValueError(f"ids has {id_arr.shape[0]} entries but vectors has {x.shape[0]} rows")
        if id_arr.size == 0:
            return
        # last occurrence wins inside the batch
        _, last = np.unique(id_arr[::-1], return_index=True)
        keep = np.sort(id_arr.size - 1 - last)
        id_arr, x = id_arr[keep], x[keep]
        self._tombstone(id_arr)
        start = self._index.ntotal
        if self.is_exact and len(self) + id_arr.size >= self.exact_below:
            self._rebuild(approx=True, extra_ids=id_arr, extra_vectors=x)
            return
        self._index.add(x)
        self._row_ids = np.concatenate([self._row_ids, id_arr])
        self._alive = np.concatenate([self._alive, np.ones(id_arr.size, dtype=bool)])
        self._row_of.update(zip(id_arr.tolist(), range(start, start + id_arr.size), strict=True))
        self._maybe_compact()

    def remove(self, ids: ArrayLike) -> None:
        """Remove ids; ids not present are ignored."""
        self._tombstone(np.asarray(ids, dtype=np.int64).reshape(-1))
        self._maybe_compact()

    def _tombstone(self, ids: NDArray[np.int64]) -> None:
        for i in ids.tolist():
            row = self._row_of.pop(i, None)
            if row is not None:
                self._alive[row] = False

    def _maybe_compact(self) -> None:
        total = self._index.ntotal
        if total and (total - len(self)) > _MAX_DEAD_FRACTION * total:
            self._rebuild(approx=not self.is_exact)

    def _storage(self) -> Any:
        if isinstance(self._index, faiss.IndexHNSWFlat):
            return faiss.downcast_index(self._index.storage)
        return self._index

    def _stored_vectors(self) -> NDArray[np.float32]:
        return self._storage().reconstruct_n(0, self._index.ntotal)

    def _rebuild(
        self,
        *,
        approx: bool,
        extra_ids: NDArray[np.int64] | None = None,
        extra_vectors: NDArray[np.float32] | None = None,
    ) -> None:
        vecs = self._stored_vectors()[self._alive]
        ids = self._row_ids[self._alive]
        if extra_ids is not None and extra_vectors is not None:
            vecs = np.concatenate([vecs, extra_vectors])
            ids = np.concatenate([ids, extra_ids])
        self._index = self._new_index(approx=approx, train=vecs)
        if len(ids):
            self._index.add(np.ascontiguousarray(vecs, dtype=np.float32))
        self._row_ids = ids.astype(np.int64, copy=True)
        self._alive = np.ones(len(ids), dtype=bool)
        self._row_of = dict(zip(ids.tolist(), range(len(ids)), strict=True))

    # -- search ---------------------------------------------------------------------------
    def search(self, vectors: ArrayLike, k: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """The ``k`` most similar stored vectors of each query.

        Parameters
        ----------
        vectors : (m, dim) or (dim,) array_like
            Queries; normalised like the stored rows.
        k : int
            Neighbours per query.

        Returns
        -------
        scores : (m, k) float32
            Cosine similarities, best first; ``-inf`` where fewer than ``k`` exist.
        ids : (m, k) int64
            External ids, ``-1`` where fewer than ``k`` exist.
        """
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        k = int(k)
        q = np.asarray(vectors, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        q = normalise_rows(q, name="vectors")
        if q.shape[1] != self.dim:
            raise ValueError(f"vectors must have {self.dim} columns, got {q.shape[1]}")
        m = q.shape[0]
        out_s = np.full((m, k), -np.inf, dtype=np.float32)
        out_i = np.full((m, k), -1, dtype=np.int64)
        if m == 0 or len(self) == 0:
            return out_s, out_i
        dead = self._index.ntotal - len(self)
        fetch = min(k + dead, self._index.ntotal)
        todo = np.arange(m)
        while todo.size:
            s, rows = self._raw_search(q[todo], fetch)
            valid = rows >= 0
            valid[valid] = self._alive[rows[valid]]
            n_valid = valid.sum(axis=1)
            # stable sort by validity keeps the best-first order of the valid rows
            order = np.argsort(~valid, axis=1, kind="stable")[:, :k]
            s_sorted = np.take_along_axis(s, order, axis=1)
            r_sorted = np.take_along_axis(rows, order, axis=1)
            v_sorted = np.take_along_axis(valid, order, axis=1)
            ids = np.where(v_sorted, self._row_ids[np.maximum(r_sorted, 0)], -1)
            width = min(k, order.shape[1])
            out_i[todo, :width] = ids
            out_s[todo, :width] = np.where(v_sorted, s_sorted, -np.inf)
            # HNSW may return fewer valid rows than exist; widen once for those queries
            short = (n_valid < min(k, len(self))) & (fetch < self._index.ntotal)
            todo = todo[short]
            fetch = min(max(2 * fetch, fetch + 64), self._index.ntotal)
        return out_s, out_i

    def _raw_search(self, q: NDArray[np.float32], k: int) -> tuple[NDArray, NDArray]:
        if isinstance(self._index, faiss.IndexHNSWFlat):
            self._index.hnsw.efSearch = max(self.ef_search, k)
        if q.shape[0] > _SMALL_BATCH:
            scores, rows = self._index.search(q, k)
            return scores, rows.astype(np.int64, copy=False)
        # A handful of queries gains nothing from OpenMP, and on a busy machine the threads'
        # barrier waits dominate: one flat query over 10k rows took 15 ms with 2 threads
        # under load, 0.2 ms with 1.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            scores, rows = self._index.search(q, k)
        finally:
            faiss.omp_set_num_threads(threads)
        return scores, rows.astype(np.int64, copy=False)

    def reconstruct(self, ids: ArrayLike) -> NDArray[np.float32]:
        """(m, dim) float32 stored (normalised) vectors of ``ids``; KeyError for a missing id."""
        id_arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        rows = np.array([self._row_of[i] for i in id_arr.tolist()], dtype=np.int64)
        storage = self._storage()
        if rows.size == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        return np.stack([storage.reconstruct(int(r)) for r in rows]).astype(np.float32)

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to one ``.npz`` file, atomically (temp file + rename)."""
        path = Path(path)
        blob = faiss.serialize_index(self._index)
        params = np.array(
            [_FORMAT_VERSION, self.dim, self.exact_below, self.hnsw_m]
            + [self.ef_construction, self.ef_search, int(self.kind == "ivf")]
            + [self.nlist or 0, self.nprobe],
            dtype=np.int64,
        )
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, params=params, faiss=blob, row_ids=self._row_ids, alive=self._alive)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> VectorIndex:
        """Read an index written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as data:
            params = data["params"].tolist()
            if params[0] != _FORMAT_VERSION:
                raise ValueError(f"path: unsupported index format version {params[0]}")
            out = cls(
                params[1],
                exact_below=params[2],
                hnsw_m=params[3],
                ef_construction=params[4],
                ef_search=params[5],
                kind="ivf" if params[6] else "hnsw",
                nlist=params[7] or None,
                nprobe=params[8],
            )
            out._index = faiss.deserialize_index(data["faiss"])
            out._row_ids = data["row_ids"].astype(np.int64)
            out._alive = data["alive"].astype(bool)
        alive_rows = np.flatnonzero(out._alive)
        out._row_of = dict(zip(out._row_ids[alive_rows].tolist(), alive_rows.tolist(), strict=True))
        return out
