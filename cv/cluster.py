"""Writer clustering of slip embeddings: batch, incremental, stable ids, customer links.

Batch clustering never forms an n×n matrix.  It builds a k-nearest-neighbour graph from an
ANN index (:class:`cv.index.VectorIndex`) and runs average-linkage agglomeration (UPGMA)
restricted to cluster pairs that the graph joins.  The average cosine between two clusters
is ``sum_A · sum_B / (|A| |B|)``, so slip-to-cluster and cluster-to-cluster evidence use
every member (CV-NOTES "Evidence across slips": averaging many noisy slip pairs is far more
reliable than the single best pair that single linkage / connected components trusts).
Merges stop at the calibrated threshold; clusters whose slips never meet in the kNN graph
(one writer on two printed forms) are paired through a kNN search over cluster centroids.
On the synthetic benchmark this lifted pairwise recall at precision >= 0.98 from 0.48
(thresholded kNN graph + connected components) to 0.99.  The older graph method stays
available as ``linkage="single"`` (mutual kNN edges, Maier, Hein & von Luxburg 2009).

Incremental assignment uses slip-to-cluster evidence over the slip's k neighbours: the mean
of its top-m similarities to a cluster's members, members not among the k neighbours counted
at the k-th neighbour's similarity (an upper bound on what they could score), so one lucky
match to a large cluster is discounted while agreement with several members is not.  A
cluster that clears the merge threshold on that evidence must clear it again on the slip's
average score to all its members (``cluster_members``), the quantity the threshold was
calibrated on (average linkage): a cluster whose few members nearest the slip look like it
while the rest do not drew wrong writers in one at a time.  Held-out generated slips replayed
in arrival order (3 orders pooled), pairwise P / R: 60 x 6 0.802 / 0.132 -> 0.897 / 0.126,
120 x 6 0.895 / 0.075 -> 0.955 / 0.071 (2026-12-07).

Score normalisation: some slips are close to everything (a common font, little ink), so one
global threshold is too low for them and too high for the rest.  A slip's *offset* is the
mean similarity at ranks 5..15 of its neighbours in the collection (the close impostors: the
first ranks may be the writer's own slips), and a pair scores ``cos - (b_i + b_j) / 2``
(adaptive score normalisation as in speaker verification, Matejka et al. 2017).  It is linear,
so the average adjusted score of two clusters is their average cosine minus half the sum of
their mean offsets and UPGMA stays closed form.  On held-out generated slips it lifted pairwise
recall at precision 0.98 from 0.09 to 0.28 and best pairwise F1 from 0.51 to 0.70
(bench/score_norm.py).  Batch (re-)clustering uses them (``Calibration.batch``); incremental
assignment does not: offsets measured while a collection is still small are low, and assigning
one slip at a time on them linked half its slips wrongly on held-out generated slips (pairwise
precision 0.33), against 1.00 on raw cosine at the raw operating point.

Human decisions are constraints: must-linked slips start in one cluster, and a merge that
would put a cannot-link pair together is never a candidate (Wagstaff et al. 2001).

Everything here is pure: numpy arrays and mappings in, arrays, dicts and dataclasses out.
"""

from __future__ import annotations

from collections import ChainMap, Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from cv.index import VectorIndex, normalise_rows

__all__ = [
    "DEFAULT_THRESHOLD",
    "Assignment",
    "Attribution",
    "ClusterCustomers",
    "ClusterEvent",
    "Calibration",
    "assign_incremental",
    "calibrate_clustering",
    "calibrate_threshold",
    "calibration_of",
    "cluster_calibrated",
    "cluster_embeddings",
    "collection_offsets",
    "confidence_from_evidence",
    "impostor_tail",
    "diffused_scores",
    "distinct_writers_bound",
    "knn_graph",
    "link_customers",
    "membership_confidence",
    "indexed_offsets",
    "ranking_scores",
    "replay_arrivals",
    "replayed_pair_counts",
    "same_account",
    "score_offsets",
    "stable_relabel",
    "writer_halves",
]

#: Fallback cosine threshold when the embedding model carries no calibrated one.  On the
#: synthetic benchmark's embeddings (bench/cluster_scale.py) raw cosine calibrates to 0.43 at
#: pairwise precision >= 0.98 (2026-12-06); real models carry their own (``threshold_``).
DEFAULT_THRESHOLD = 0.5
#: Width of the logistic that turns evidence - threshold into a 0..1 confidence.
DEFAULT_TEMPERATURE = 0.05
#: Neighbour ranks (0-based, the slip itself excluded) whose mean similarity is a slip's
#: score offset.  Best pairwise recall at precision 0.98 on validation writers against ranks
#: 0-10, 3-15, 5-20, 5-30 and 8-20; 0-10 clustered a little better there, but a regular
#: writer's first ranks are his own slips (bench/score_norm.py).
DEFAULT_OFFSET_RANKS = (5, 15)
#: Collection size at which measured and typical offsets weigh equally (Calibration.shrink).
#: With 250 or 500 the 120 sample slips cluster at pairwise precision 1.00 (0.90 unshrunk)
#: and held-out generated recall at the merge threshold stays 0.08-0.09; 1000+ costs recall.
#: On validation writers (fit-split fonts) precision was 1.00 with or without it, and it
#: cost recall (360 slips 0.24 -> 0.12, 120-slip subsets 0.55 -> 0.18): the small-collection
#: precision loss shows on unseen fonts only, which is what an operator's writers are.
DEFAULT_OFFSET_PRIOR = 500.0
#: Extra neighbours searched when offsets leave out a slip's own customer account's slips
#: (:func:`same_account`), so a customer with many slips still has other writers' slips at
#: the offset ranks.  A regular's own slips are his nearest: with them in the band his
#: offsets run high (median 0.72 against 0.54 on 6-slip writers) and every score between
#: his slips sinks below the merge threshold (20 held-out writers x 30 slips: pairwise
#: recall 0.002).
ACCOUNT_EXTRA = 15
#: Random slip pairs per fold of over 4000 slips whose scores stand for all of its pairs in
#: the different-writer tail (:func:`impostor_tail`)
_TAIL_SAMPLE = 1_000_000
#: True pairs a source of calibration slips needs before its own operating point counts
#: (:func:`_pooled_operating_point`): fewer, and a few merges would set it.
MIN_DOMAIN_PAIRS = 100
#: Share of fit-fold writers whose slips, split in two groups, may read as two writers at
#: the calibrated :attr:`Calibration.distinct_writers` bound (in every source of fit slips),
#: read off a normal matched to the halves' 10th and 25th percentiles (:func:`_lower_tail`).
#: The fit folds flatter real handwriting (their writers' descriptors shaped the VLAD
#: vocabularies and whitening), and their empirical 2.5 % quantile let 3.6 / 10.7 / 15.2 % of
#: the unseen UNIPEN validation writers' halves below it (folds 0-2, session 14); the normal's
#: lighter-than-real lower tail makes up for it: 0 / 3.6 / 0 % (generated 0 / 0 / 3.8 %).
DISTINCT_WRITERS_RATE = 0.025
#: Writers of 4+ slips a source needs before its own bound counts (:func:`distinct_writers_bound`).
MIN_BOUND_WRITERS = 20
#: The live assigner's offsets cache is dropped when the index has grown by this factor since
#: it was started (``workers.pipeline.Assigner.known_offsets``, and :func:`replay_arrivals` as
#: the benchmarks replay it): a slip's offset rises as look-alikes arrive.
OFFSETS_REFRESH = 1.25
# Weight given to must-link edges: above any cosine similarity, so they merge first.
_MUST_WEIGHT = 2.0


# -- kNN graph --------------------------------------------------------------------------------
def knn_graph(
    X: ArrayLike,
    *,
    k: int,
    index: VectorIndex | None = None,
    exact_below: int = 20_000,
    kind: str = "ivf",
    nprobe: int = 8,
    hnsw_m: int = 16,
    batch_size: int = 65_536,
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """k nearest neighbours of every row, the row itself excluded.

    Parameters
    ----------
    X : (n, d) array_like
        Embeddings; cosine similarity is used (rows are normalised).
    k : int
        Neighbours per row.
    index : VectorIndex, optional
        An index already holding the rows of ``X`` under ids ``0 .. n-1``.  Built here when
        omitted: exact below ``exact_below`` rows, else ``kind`` ("ivf": inverted file
        scanning ``nprobe`` lists, or "hnsw").  IVF is the default: at 10^5 synthetic slips it
        built and searched in half HNSW's time with the same clustering F1 (0.986).
    batch_size : int
        Queries per search call, bounding the temporary memory.

    Returns
    -------
    neighbours : (n, k) int64
        Row indices, best first; ``-1`` where fewer than ``k`` other rows exist.
    similarities : (n, k) float32
        Cosine similarities; ``-inf`` where the neighbour is ``-1``.
    """
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = int(k)
    x = normalise_rows(X, name="X")
    n = x.shape[0]
    if index is None:
        index = VectorIndex(
            x.shape[1],
            exact_below=exact_below,
            kind=kind,
            nprobe=nprobe,
            hnsw_m=hnsw_m,
            ef_search=max(64, 2 * k),
        )
        index.add(np.arange(n, dtype=np.int64), x)
    elif len(index) != n:
        raise ValueError(f"index must hold the {n} rows of X under ids 0..n-1, has {len(index)}")
    nbr = np.full((n, k), -1, dtype=np.int64)
    sim = np.full((n, k), -np.inf, dtype=np.float32)
    for start in range(0, n, int(batch_size)):
        stop = min(n, start + int(batch_size))
        s, ids = index.search(x[start:stop], k + 1)
        rows = np.arange(start, stop)[:, None]
        # drop the row itself wherever it appears (ties may put it after a duplicate);
        # when it is missing the extra (k+1)-th neighbour is dropped instead
        not_self = ids != rows
        order = np.argsort(~not_self, axis=1, kind="stable")[:, :k]
        nbr[start:stop] = np.take_along_axis(ids, order, axis=1)
        sim[start:stop] = np.take_along_axis(s, order, axis=1)
    sim[nbr < 0] = -np.inf
    return nbr, sim


# -- score normalisation ----------------------------------------------------------------------
def score_offsets(
    similarities: ArrayLike,
    ranks: tuple[int, int] = DEFAULT_OFFSET_RANKS,
    *,
    fill: float | None = None,
    skip: ArrayLike | None = None,
) -> NDArray[np.float32]:
    """Each slip's score offset: the mean of its neighbour similarities at ``ranks``.

    Parameters
    ----------
    similarities : (n, k) array_like
        Similarities to each slip's nearest other slips, best first (``-inf`` = no
        neighbour), as :func:`knn_graph` returns them; ``k >= ranks[1]`` for the full range.
    ranks : (lo, hi)
        Half-open range of 0-based neighbour ranks averaged.
    fill : float, optional
        What a rank missing from the band counts as (a collection of fewer than ``hi + 1``
        slips): the typical offset of the calibration data, so a tiny collection, whose
        few neighbours are often the writer's own slips, is scored like a typical slip.
        Without it the ranks from ``lo`` on that exist count; with none there the furthest
        neighbour's similarity; with no neighbour at all the offset is 0.
    skip : (n, k) bool array_like, optional
        Neighbours left out before the ranks are counted (:func:`same_account`: a
        customer's other slips are his own handwriting, not the other writers the offset
        measures).

    Returns
    -------
    (n,) float32
    """
    lo, hi = int(ranks[0]), int(ranks[1])
    if not 0 <= lo < hi:
        raise ValueError(f"ranks must be 0 <= lo < hi, got {ranks}")
    sim = np.asarray(similarities, dtype=np.float64)
    if sim.ndim != 2:
        raise ValueError(f"similarities must be 2-D (slips, neighbours), got shape {sim.shape}")
    if sim.shape[1] == 0:
        return np.zeros(sim.shape[0], dtype=np.float32)
    if skip is not None:
        left_out = np.asarray(skip, dtype=bool)
        if left_out.shape != sim.shape:
            raise ValueError(f"skip must be shaped {sim.shape}, not {left_out.shape}")
        # the kept neighbours moved to the front, best first, the left-out ones to the end
        order = np.argsort(left_out, axis=1, kind="stable")
        sim = np.where(np.take_along_axis(left_out, order, axis=1), -np.inf,
                       np.take_along_axis(sim, order, axis=1))  # fmt: skip
    ok = np.isfinite(sim)
    count = ok.sum(axis=1)
    band = np.where(ok[:, lo:hi], sim[:, lo:hi], 0.0)
    n_band = ok[:, lo:hi].sum(axis=1)
    if fill is not None:
        return ((band.sum(axis=1) + (hi - lo - n_band) * float(fill)) / (hi - lo)).astype(
            np.float32
        )
    out = band.sum(axis=1) / np.maximum(n_band, 1)
    furthest = sim[np.arange(sim.shape[0]), np.maximum(count - 1, 0)]
    out = np.where(n_band > 0, out, np.where(count > 0, furthest, 0.0))
    return out.astype(np.float32)


def same_account(neighbours: ArrayLike, accounts: ArrayLike) -> NDArray[np.bool_]:
    """(n, k) True where a neighbour belongs to the slip's own customer account.

    ``accounts`` holds one key per slip: integers (a negative one for an anonymous slip) or
    strings (``None`` or ``""`` for an anonymous slip).  An anonymous slip shares an account
    with no one.  ``neighbours`` is a :func:`knn_graph` index array.
    """
    nbr = np.asarray(neighbours)
    keys = np.asarray(accounts)
    if keys.shape != (nbr.shape[0],):
        raise ValueError(f"accounts must have one entry per slip ({len(nbr)}), not {keys.shape}")
    if keys.dtype.kind in "iu":
        code = keys.astype(np.int64)
    else:
        known = np.array([k is not None and k != "" for k in keys.tolist()], dtype=bool)
        _, code = np.unique(np.where(known, keys, "").astype(str), return_inverse=True)
        code = np.where(known, code.reshape(-1), -1)
    theirs = code[np.maximum(nbr, 0)]
    return (nbr >= 0) & (code[:, None] >= 0) & (theirs == code[:, None])


def indexed_offsets(
    index: VectorIndex,
    ids: Iterable[int],
    ranks: tuple[int, int] = DEFAULT_OFFSET_RANKS,
    *,
    fill: float | None = None,
) -> dict[int, float]:
    """Score offsets of slips already in ``index``: each one's own neighbours at ``ranks``
    (itself excluded), one batched search."""
    want = np.asarray(list(ids), dtype=np.int64)
    if want.size == 0:
        return {}
    vectors = index.reconstruct(want)
    scores, found = index.search(vectors, int(ranks[1]) + 1)
    # drop each slip itself; when it is not among the results the last column goes
    not_self = found != want[:, None]
    order = np.argsort(~not_self, axis=1, kind="stable")[:, : int(ranks[1])]
    sim = np.take_along_axis(scores, order, axis=1).astype(np.float32)
    sim[np.take_along_axis(found, order, axis=1) < 0] = -np.inf
    return dict(zip(want.tolist(), score_offsets(sim, ranks, fill=fill).tolist(), strict=True))


#: Database-side augmentation of rankings: each vector plus this weight times each of its
#: nearest neighbours (Arandjelovic & Zisserman, "Three things everyone should know to
#: improve object retrieval", CVPR 2012).  Chosen on validation writers of the fit split,
#: normalised scores, mAP / top-1 / top-5: generated 0.873 / 0.942 / 0.986 -> 0.906 / 0.947 /
#: 0.972, UNIPEN 0.381 / 0.585 / 0.826 -> 0.406 / 0.598 / 0.826.  A heavier weight buys a
#: little more mAP with top-5 lost (0.5: generated 0.914 / 0.947 / 0.967, UNIPEN top-5
#: 0.808): a slip pulled towards wrong neighbours pushes its own writer's slips down.
RANKING_AUGMENT = (2, 0.15)
#: Augmentation before batch clustering's scores: the model's batch calibration is measured
#: on augmented fit folds and records it (``Calibration.augment``).  A slip pulled towards its
#: nearest slips lets a writer's slips clear the merge threshold together.  Chosen on
#: validation writers (fonts the fit never saw), pairwise P / R / F1 at the calibrated
#: threshold: none 1.000 / 0.022 / 0.043; (2, 0.15) 1.000 / 0.049 / 0.093; (3, 0.3) 1.000 /
#: 0.119 / 0.213 (UNIPEN validation writers: precision 0.929 -> 0.947, recall 0.032 -> 0.044).
CLUSTER_AUGMENT = (3, 0.3)


#: Diffusion of rankings over the collection's neighbour graph, (k, alpha, weight): see
#: :func:`diffused_scores`.  Chosen on validation writers (fonts the fit never saw).
RANKING_DIFFUSION = (5, 0.8, 1.0)


def diffused_scores(
    sim: NDArray, *, k: int, alpha: float, gamma: float = 3.0, tol: float = 1e-3
) -> NDArray[np.float32]:
    """Manifold ranking of every slip against every other over a kNN graph of ``sim``.

    Zhou et al., "Ranking on data manifolds" (NIPS 2003), as used for image retrieval by
    Iscen et al., "Efficient diffusion on region manifolds" (CVPR 2017): affinities
    ``max(sim, 0) ** gamma`` to each slip's ``k`` nearest others, symmetric, normalised
    ``D^-1/2 A D^-1/2 = S``; the scores are ``(I - alpha S)^-1`` summed as its power series
    (sparse products, truncated where ``alpha ** t < tol``).  A writer's slips that reach
    each other through chains of close slips rank higher than an outsider who is close to
    one of them only.  Returns (n, n); higher = more similar.
    """
    a = np.asarray(sim, dtype=np.float64)
    n = a.shape[0]
    k = min(int(k), n - 1)
    if n < 2 or k < 1:
        return np.eye(n, dtype=np.float32)
    off = a.copy()
    np.fill_diagonal(off, -np.inf)
    nbr = np.argpartition(-off, k - 1, axis=1)[:, :k]
    rows = np.repeat(np.arange(n), k)
    weights = np.maximum(a[rows, nbr.ravel()], 0.0) ** gamma
    affinity = coo_matrix((weights, (rows, nbr.ravel())), shape=(n, n)).tocsr()
    affinity = affinity.maximum(affinity.T)
    degree = np.asarray(affinity.sum(axis=1)).ravel()
    inv_sqrt = 1.0 / np.sqrt(np.where(degree > 0, degree, 1.0))
    step = affinity.multiply(inv_sqrt[:, None]).multiply(inv_sqrt[None, :]) * alpha
    step = step.tocsr().astype(np.float32)
    # float32 (n, n) terms: a collection of 10^4 slips holds two of 400 MB, as `similar` does
    term = np.eye(n, dtype=np.float32)
    total = term.copy()
    for _ in range(int(np.ceil(np.log(tol) / np.log(alpha)))):
        term = step @ term
        total += term
    return total


def _diffusion_added(
    sim: NDArray[np.float32], diffusion: tuple[int, float, float], *, level: float
) -> NDArray:
    """``sim`` plus ``weight`` times the diffusion scores over ``sim + level`` (affinities
    want cosine-like levels), each slip's row standardised and brought to the spread of
    ``sim`` (so scores keep their units and the design penalty its meaning)."""
    k, alpha, weight = diffusion
    f = diffused_scores(sim + level, k=int(k), alpha=float(alpha)).astype(np.float64)
    mask = ~np.eye(len(f), dtype=bool)
    off = np.where(mask, f, np.nan)
    fz = (f - np.nanmean(off, axis=1, keepdims=True)) / np.maximum(
        np.nanstd(off, axis=1, keepdims=True), 1e-12
    )
    fz = 0.5 * (fz + fz.T)
    spread = float(np.std(sim[mask])) if mask.any() else 0.0
    return sim + float(weight) * spread * fz


def ranking_scores(
    X: ArrayLike,
    calibration: Calibration | None = None,
    *,
    augment: tuple[int, float] = RANKING_AUGMENT,
    diffusion: tuple[int, float, float] | None = RANKING_DIFFUSION,
) -> NDArray[np.float32]:
    """(n, n) scores for ranking each slip's neighbours within one collection of slips.

    Each vector is first averaged with its ``augment[0]`` nearest others at weight
    ``augment[1]`` (database-side augmentation: a writer's slips pull each other closer),
    then pairs score their cosine, less half of both slips' measured offsets when the
    calibration scores that way (:meth:`Calibration.offsets`, unshrunk: a ranking only
    compares offsets).  For ranking only: thresholds and clustering keep the plain vectors
    their calibration was measured on.  The diagonal holds each slip's own score.
    """
    x = np.asarray(X, dtype=np.float32)
    n = x.shape[0] if x.ndim == 2 else 0
    if n < 2:
        return (x @ x.T).astype(np.float32) if n else np.zeros((0, 0), np.float32)
    if int(augment[0]) > 0 and float(augment[1]) > 0:
        x = augmented_collection(x, augment)
    sim = x @ x.T
    offsets = collection_offsets(x, calibration)
    if offsets is not None:
        sim -= 0.5 * (offsets[:, None] + offsets[None, :])
        if diffusion is not None and n > 2:
            # the graph's affinities want cosine-like levels: the typical offset added back
            sim = _diffusion_added(sim, diffusion, level=float(np.median(offsets)))
    return sim.astype(np.float32)


def augmented(
    x: NDArray[np.float32], neighbours: NDArray[np.int64], weight: float, *, chunk: int = 65_536
) -> NDArray[np.float32]:
    """Database-side augmentation: each row plus ``weight`` times each of its ``neighbours``
    (an (n, k) index array, -1 = none), L2-normalised again."""
    nbr = np.asarray(neighbours)
    out = np.array(x, dtype=np.float32)
    for start in range(0, len(out), chunk):  # chunks bound the temporaries at 10^6 slips
        rows = slice(start, start + chunk)
        for j in range(nbr.shape[1]):
            ids = nbr[rows, j]
            out[rows] += np.float32(weight) * np.where(
                (ids >= 0)[:, None], x[np.maximum(ids, 0)], 0
            )
        out[rows] /= np.maximum(np.linalg.norm(out[rows], axis=1, keepdims=True), 1e-12)
    return out


def augmented_collection(X: ArrayLike, augment: tuple[int, float]) -> NDArray[np.float32]:
    """:func:`augmented` with each row's ``augment[0]`` nearest others in ``X`` (exact or
    indexed kNN), at weight ``augment[1]``; rows normalised first."""
    x = normalise_rows(X, name="X")
    k = min(int(augment[0]), len(x) - 1)
    return augmented(x, knn_graph(x, k=k)[0], float(augment[1])) if k > 0 else x


def batch_vectors(X: ArrayLike, calibration: Calibration) -> NDArray[np.float32]:
    """The vectors that ``calibration``'s scores compare: augmented when it records an
    augmentation (batch clustering), else the rows normalised."""
    if calibration.augment is None:
        return normalise_rows(X, name="X")
    return augmented_collection(X, calibration.augment)


def collection_offsets(X: ArrayLike, calibration: Calibration | None) -> NDArray[np.float32] | None:
    """Each slip's score offset within these slips as measured (unshrunk, as a ranking
    uses them), None when the calibration (or its absence) means raw cosine."""
    x = np.asarray(X, dtype=np.float32)
    ranks = None if calibration is None else calibration.offset_ranks
    if calibration is None or ranks is None or len(x) < 2:
        return None
    k = min(max(10, int(ranks[1])), len(x) - 1)
    return calibration.offsets(knn_graph(x, k=k)[1], collection=None)


def _shrunk(
    measured: ArrayLike, typical: float | None, prior: float | None, collection: int
) -> NDArray[np.float32]:
    """Offsets keeping collection / (collection + prior) of their measured value, the rest
    the typical offset (unchanged without a prior or a typical offset)."""
    b = np.asarray(measured, dtype=np.float32)
    if not prior or typical is None:
        return b
    weight = collection / (collection + float(prior))
    return (weight * b + (1.0 - weight) * float(typical)).astype(np.float32)


def _adjusted(
    nbr: NDArray[np.int64], sim: NDArray[np.float32], offsets: NDArray[np.float32] | None
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Neighbour lists scored ``cos - (b_i + b_j) / 2``, re-sorted best first (unchanged when
    ``offsets`` is None)."""
    if offsets is None:
        return nbr, sim
    b = np.asarray(offsets, dtype=np.float32)
    if b.shape != (nbr.shape[0],):
        raise ValueError(f"offsets must have one entry per slip ({nbr.shape[0]}), got {b.shape}")
    adj = sim - 0.5 * (b[:, None] + b[np.maximum(nbr, 0)])
    adj[nbr < 0] = -np.inf
    order = np.argsort(-adj, axis=1, kind="stable")
    return np.take_along_axis(nbr, order, axis=1), np.take_along_axis(adj, order, axis=1)


# -- evidence ---------------------------------------------------------------------------------
def confidence_from_evidence(
    evidence: ArrayLike, *, threshold: float, temperature: float = DEFAULT_TEMPERATURE
) -> NDArray[np.float64]:
    """Logistic map of evidence to 0..1: 0.5 at the threshold, steeper for small temperature."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    e = np.asarray(evidence, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-(e - float(threshold)) / float(temperature)))


def _group_evidence(
    rows: NDArray[np.int64],
    labels: NDArray[np.int64],
    scores: NDArray[np.float32],
    kth: NDArray[np.float32],
    available: NDArray[np.int64] | None,
    *,
    top_m: int,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """Slip-to-cluster evidence for every (query row, cluster) pair among the neighbours.

    Parameters
    ----------
    rows, labels, scores : (e,) arrays
        One entry per (query, neighbour) with the neighbour's cluster label (>= 0 only).
    kth : (q,) float
        Each query's k-th neighbour similarity (indexed by ``rows``).
    available : (e,) int or None
        Members of the neighbour's cluster that could be neighbours of the query (cluster
        size, minus the query itself when it is a member).  ``None``: only those seen count.
    top_m : int
        Members averaged.

    Returns
    -------
    (g,) query rows, (g,) labels, (g,) evidence -- one entry per distinct (row, label).
    """
    if rows.size == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=np.float64)
    order = np.lexsort((-scores, labels, rows))
    r, lab, s = rows[order], labels[order], scores[order].astype(np.float64)
    avail = available[order] if available is not None else None
    new_group = np.ones(r.size, dtype=bool)
    new_group[1:] = (r[1:] != r[:-1]) | (lab[1:] != lab[:-1])
    starts = np.flatnonzero(new_group)
    group_id = np.cumsum(new_group) - 1
    rank = np.arange(r.size) - starts[group_id]
    keep = rank < top_m
    sums = np.bincount(group_id[keep], weights=s[keep], minlength=starts.size)
    seen = np.bincount(group_id[keep], minlength=starts.size)
    g_rows, g_labels = r[starts], lab[starts]
    if avail is None:
        want = seen
    else:
        want = np.maximum(np.minimum(avail[starts], top_m), seen)
    # members not among the k neighbours score at most the k-th neighbour's similarity
    fill = np.nan_to_num(kth[g_rows].astype(np.float64), neginf=-1.0)
    evidence = (sums + (want - seen) * fill) / np.maximum(want, 1)
    return g_rows, g_labels, evidence


def _best_per_row(
    g_rows: NDArray[np.int64], g_labels: NDArray[np.int64], evidence: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """The cluster with the highest evidence for each row (ties: lowest label)."""
    if g_rows.size == 0:
        return g_rows, g_labels, evidence
    order = np.lexsort((g_labels, -evidence, g_rows))
    first = np.ones(order.size, dtype=bool)
    first[1:] = g_rows[order][1:] != g_rows[order][:-1]
    pick = order[first]
    return g_rows[pick], g_labels[pick], evidence[pick]


# -- batch clustering -------------------------------------------------------------------------
def _pairs(pairs: Iterable[tuple[int, int]], *, n: int, name: str) -> NDArray[np.int64]:
    arr = np.asarray(list(pairs), dtype=np.int64).reshape(-1, 2)
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise ValueError(f"{name} holds a row index outside 0..{n - 1}")
    if arr.size and (arr[:, 0] == arr[:, 1]).any() and name == "cannot_link":
        raise ValueError("cannot_link pairs a row with itself")
    return arr


def _mutual_edges(
    nbr: NDArray[np.int64], sim: NDArray[np.float32], *, threshold: float, mutual: bool
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]:
    """Undirected (i < j) edges above the threshold; mutual kNN only when ``mutual``."""
    n, k = nbr.shape
    src = np.repeat(np.arange(n, dtype=np.int64), k)
    dst = nbr.reshape(-1)
    w = sim.reshape(-1)
    ok = (dst >= 0) & (w >= threshold)
    src, dst, w = src[ok], dst[ok], w[ok]
    if mutual:
        # (i, j) is mutual when j lists i too; compare int64 pair keys (n < 3e9 here)
        all_keys = np.repeat(np.arange(n, dtype=np.int64), k) * n + nbr.reshape(-1)
        all_keys = np.sort(all_keys[nbr.reshape(-1) >= 0])
        rev = dst * n + src
        pos = np.searchsorted(all_keys, rev)
        pos[pos >= all_keys.size] = 0
        both = all_keys[pos] == rev if all_keys.size else np.zeros(rev.size, bool)
        src, dst, w = src[both], dst[both], w[both]
    lo, hi = np.minimum(src, dst), np.maximum(src, dst)
    key = lo * n + hi
    _, first = np.unique(key, return_index=True)
    return lo[first], hi[first], w[first]


class _UnionFind:
    """Union-find with per-root cannot-link sets (constrained single linkage)."""

    def __init__(self, nodes: Iterable[int], cannot: Iterable[tuple[int, int]]) -> None:
        self.parent = {v: v for v in nodes}
        self.size = dict.fromkeys(self.parent, 1)
        self.forbid: dict[int, set[int]] = defaultdict(set)
        for a, b in cannot:
            self.forbid[a].add(b)
            self.forbid[b].add(a)

    def find(self, v: int) -> int:
        root = v
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[v] != root:
            self.parent[v], v = root, self.parent[v]
        return root

    def union(self, a: int, b: int) -> bool:
        """Merge the sets of a and b unless a cannot-link forbids it; True when merged."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        # forbid sets hold members of sets that may not join; map them to roots on use
        fa = {self.find(x) for x in self.forbid.pop(ra, ())}
        fb = {self.find(x) for x in self.forbid.pop(rb, ())}
        if rb in fa or ra in fb:
            for root, f in ((ra, fa), (rb, fb)):
                if f:
                    self.forbid[root] = f
            return False
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]
        if fa | fb:
            self.forbid[ra] = fa | fb
        return True


def _split_conflicts(
    comp: NDArray[np.int64],
    edges: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]],
    cannot: NDArray[np.int64],
) -> NDArray[np.int64]:
    """Re-build components that hold a cannot-link pair by constrained Kruskal."""
    if cannot.size == 0:
        return comp
    bad = np.unique(comp[cannot[:, 0]][comp[cannot[:, 0]] == comp[cannot[:, 1]]])
    if bad.size == 0:
        return comp
    lo, hi, w = edges
    in_bad = np.isin(comp[lo], bad)
    lo, hi, w = lo[in_bad], hi[in_bad], w[in_bad]
    nodes = np.flatnonzero(np.isin(comp, bad))
    sel = np.isin(comp[cannot[:, 0]], bad)
    uf = _UnionFind(nodes.tolist(), [tuple(p) for p in cannot[sel].tolist()])
    order = np.argsort(-w, kind="stable")
    for a, b, weight in zip(lo[order].tolist(), hi[order].tolist(), w[order].tolist(), strict=True):
        if not uf.union(a, b) and weight >= _MUST_WEIGHT:
            raise ValueError(
                f"must_link and cannot_link conflict: must-links join rows {a} and {b} "
                "across a cannot-link"
            )
    out = comp.copy()
    next_label = int(comp.max()) + 1
    roots: dict[int, int] = {}
    for v in nodes.tolist():
        r = uf.find(v)
        if r not in roots:
            roots[r] = next_label
            next_label += 1
        out[v] = roots[r]
    return out


def cluster_embeddings(
    X: ArrayLike,
    *,
    threshold: float,
    k: int = 10,
    must_link: Iterable[tuple[int, int]] = (),
    cannot_link: Iterable[tuple[int, int]] = (),
    min_cluster_size: int = 2,
    linkage: str = "average",
    mutual: bool = True,
    attach: bool = False,
    top_m: int = 3,
    neighbours: tuple[NDArray[np.int64], NDArray[np.float32]] | None = None,
    index: VectorIndex | None = None,
    offsets: ArrayLike | None = None,
) -> NDArray[np.int64]:
    """Cluster slips by writer.

    Parameters
    ----------
    X : (n, d) array_like
        Embeddings (cosine similarity).
    threshold : float
        Calibrated cosine similarity: the average similarity two clusters need to merge
        (``linkage="average"``), or an edge needs (``"single"``).
    k : int
        Neighbours per slip in the kNN graph.
    must_link, cannot_link : iterable of (int, int)
        Row-index pairs confirmed / rejected by a human.  Must-links are always honoured
        (a must-linked group is kept even below ``min_cluster_size``); cannot-link pairs never
        share a cluster.  Contradictory constraints raise ``ValueError``.
    min_cluster_size : int
        Smaller groups are left on their own (label -1).
    linkage : {"average", "single"}
        Average-linkage agglomeration on the kNN graph (default), or connected components of
        the thresholded kNN graph (constrained single linkage).
    mutual : bool
        ``"single"`` only: keep only mutual kNN edges, else every kNN edge.
    attach : bool
        Afterwards attach slips left on their own to the cluster whose top-m evidence clears
        ``threshold`` (one pass, so attached slips never chain others in).
    top_m : int
        Members averaged in the slip-to-cluster evidence.
    neighbours : ((n, k) int64, (n, k) float32), optional
        A precomputed :func:`knn_graph` result (lets a threshold sweep reuse one graph).
    index : VectorIndex, optional
        Passed to :func:`knn_graph`.
    offsets : (n,) array_like, optional
        Per-slip score offsets (:func:`score_offsets`): every score, and so ``threshold``,
        is then ``cos - (b_i + b_j) / 2``.

    Returns
    -------
    labels : (n,) int64
        Cluster labels 0..C-1 numbered by each cluster's first row, ``-1`` = on its own.
    """
    if not -1.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be a cosine similarity in [-1, 1], got {threshold}")
    if int(min_cluster_size) < 1:
        raise ValueError(f"min_cluster_size must be >= 1, got {min_cluster_size}")
    if int(top_m) < 1:
        raise ValueError(f"top_m must be >= 1, got {top_m}")
    if linkage not in ("average", "single"):
        raise ValueError(f"linkage must be 'average' or 'single', got {linkage!r}")
    x = np.asarray(X)
    if x.ndim != 2:
        raise ValueError(f"X must be 2-D (slips, dim), got shape {x.shape}")
    n = x.shape[0]
    if n == 0:
        return np.empty(0, dtype=np.int64)
    must = _pairs(must_link, n=n, name="must_link")
    cannot = _pairs(cannot_link, n=n, name="cannot_link")
    if neighbours is None:
        nbr, sim = knn_graph(x, k=k, index=index)
    else:
        nbr = np.asarray(neighbours[0], dtype=np.int64)
        sim = np.asarray(neighbours[1], dtype=np.float32)
        if nbr.shape != sim.shape or nbr.ndim != 2 or nbr.shape[0] != n:
            raise ValueError(f"neighbours must be two (n={n}, k) arrays, got {nbr.shape}")
    b = None if offsets is None else np.asarray(offsets, dtype=np.float32).reshape(-1)
    nbr_raw = nbr
    nbr, sim = _adjusted(nbr, sim, b)

    if linkage == "average":
        comp = _must_components(n, must, cannot)
        comp = _average_linkage(
            comp,
            normalise_rows(x, name="X"),
            nbr_raw,
            threshold=float(threshold),
            cannot=cannot,
            offsets=b,
        )
    else:
        lo, hi, w32 = _mutual_edges(nbr, sim, threshold=float(threshold), mutual=mutual)
        w = w32.astype(np.float64)
        if must.size:
            lo = np.concatenate([lo, must.min(axis=1)])
            hi = np.concatenate([hi, must.max(axis=1)])
            w = np.concatenate([w, np.full(len(must), _MUST_WEIGHT)])
        graph = coo_matrix((np.ones(lo.size, dtype=np.int8), (lo, hi)), shape=(n, n))
        _, comp = connected_components(graph, directed=False)
        comp = _split_conflicts(comp.astype(np.int64), (lo, hi, w), cannot)

    sizes = np.bincount(comp)
    protected = np.zeros(sizes.size, dtype=bool)
    if must.size:
        protected[comp[must[:, 0]]] = True
    is_cluster = (sizes >= int(min_cluster_size)) | protected
    labels = np.where(is_cluster[comp], comp, -1)
    if attach:
        labels = _attach(labels, nbr, sim, cannot, threshold=float(threshold), top_m=int(top_m))
    return _renumber(labels)


def cluster_calibrated(
    X: ArrayLike,
    calibration: Calibration,
    *,
    k: int = 10,
    must_link: Iterable[tuple[int, int]] = (),
    cannot_link: Iterable[tuple[int, int]] = (),
    accounts: ArrayLike | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Batch clustering at a model's operating point, with each slip's membership confidence.

    Uses ``calibration.batch`` when the calibration has one (normalised scores), else the
    calibration itself.  One kNN graph serves the score offsets (when its ``offset_ranks`` is
    set), the clustering at its ``merge_threshold`` and the confidences.  ``accounts`` (one
    customer account key per slip, None or "" when anonymous) leaves each slip's own
    account's slips out of its offsets when the calibration was measured that way.

    Returns
    -------
    labels : (n,) int64 (see :func:`cluster_embeddings`), confidence : (n,) float32
    """
    x = np.asarray(X)
    n = x.shape[0] if x.ndim == 2 else 0
    calibration = (calibration.batch or calibration).for_collection(n)
    if n < 2:
        return cluster_embeddings(x, threshold=calibration.merge_threshold), np.zeros(n, np.float32)
    kk = min(int(k), n - 1)
    ranks = calibration.offset_ranks
    by_account = accounts is not None and calibration.account_aware and ranks is not None
    wide = kk if ranks is None else int(ranks[1]) + (ACCOUNT_EXTRA if by_account else 0)
    nbr, sim = knn_graph(x, k=min(max(kk, wide), n - 1))
    if calibration.augment is not None:
        # the augmented vectors' neighbours are looked for among the plain vectors' ones (no
        # second index search: at 10^6 slips that would double the re-cluster's time)
        x = augmented(normalise_rows(x, name="X"), nbr[:, : calibration.augment[0]],
                      calibration.augment[1])  # fmt: skip
        sim = _neighbour_dots(x, nbr)
        order = np.argsort(-sim, axis=1, kind="stable")
        nbr = np.take_along_axis(nbr, order, axis=1)
        sim = np.take_along_axis(sim, order, axis=1).astype(np.float32)
    skip = same_account(nbr, accounts) if by_account else None
    offsets = calibration.offsets(sim, collection=n, skip=skip)
    # copies, so the wider lists the offsets needed are freed before the agglomeration's peak
    graph = (np.ascontiguousarray(nbr[:, :kk]), np.ascontiguousarray(sim[:, :kk]))
    del nbr, sim, skip
    labels = cluster_embeddings(
        x,
        threshold=calibration.merge_threshold,
        neighbours=graph,
        offsets=offsets,
        must_link=must_link,
        cannot_link=cannot_link,
    )
    conf = membership_confidence(
        None, labels, calibration=calibration, neighbours=graph, offsets=offsets
    )
    return labels, conf


def _must_components(n: int, must: NDArray[np.int64], cannot: NDArray[np.int64]) -> NDArray:
    """(n,) component of each row under the must-links alone; ValueError on a conflict."""
    if must.size == 0:
        return np.arange(n, dtype=np.int64)
    graph = coo_matrix((np.ones(len(must), dtype=np.int8), (must[:, 0], must[:, 1])), (n, n))
    _, comp = connected_components(graph, directed=False)
    if cannot.size:
        clash = comp[cannot[:, 0]] == comp[cannot[:, 1]]
        if clash.any():
            a, b = cannot[np.flatnonzero(clash)[0]].tolist()
            raise ValueError(
                f"must_link and cannot_link conflict: must-links join rows {a} and {b} "
                "across a cannot-link"
            )
    return comp.astype(np.int64)


def _neighbour_dots(
    x: NDArray[np.float32], nbr: NDArray[np.int64], chunk: int = 8192
) -> NDArray[np.float32]:
    """(n, k) dot products of each row with its listed neighbours (-inf where -1), in row
    chunks so that the temporaries stay small at 10^6 slips."""
    out = np.full(nbr.shape, -np.inf, dtype=np.float32)
    for start in range(0, len(nbr), chunk):
        ids = nbr[start : start + chunk]
        dots = np.einsum("id,ikd->ik", x[start : start + chunk], x[np.maximum(ids, 0)])
        out[start : start + chunk] = np.where(ids >= 0, dots, -np.inf)
    return out


def _rowwise_dot(S: NDArray[np.float32], a: NDArray, b: NDArray, chunk: int = 200_000) -> NDArray:
    out = np.empty(a.size, dtype=np.float64)
    for i in range(0, a.size, chunk):
        out[i : i + chunk] = np.einsum("ij,ij->i", S[a[i : i + chunk]], S[b[i : i + chunk]])
    return out


def _average_linkage(
    comp: NDArray[np.int64],
    x: NDArray[np.float32],
    nbr: NDArray[np.int64],
    *,
    threshold: float,
    cannot: NDArray[np.int64],
    offsets: NDArray[np.float32] | None = None,
    max_rounds: int = 1000,
    max_refresh: int = 6,
) -> NDArray[np.int64]:
    """Average-linkage agglomeration (UPGMA) restricted to cluster pairs joined by kNN edges.

    The average cosine similarity between two clusters is the dot product of their member
    sums over the product of their sizes, so it costs O(d) per pair and no pair matrix is
    formed.  Each round merges every reciprocal-nearest-neighbour pair whose average clears
    the threshold; average linkage is reducible, so merging all reciprocal pairs at once gives
    the same tree as merging one at a time (the nearest-neighbour-chain argument, Murtagh 1983).
    Pairs holding a cannot-link are never candidates.  With ``offsets`` the average adjusted
    score subtracts half of each cluster's mean offset (kept as a per-cluster sum).
    """
    n, d = x.shape
    label = comp.copy()
    sizes = np.bincount(label, minlength=n).astype(np.float64)
    B = np.bincount(label, weights=offsets, minlength=n) if offsets is not None else None
    onehot = coo_matrix((np.ones(n, dtype=np.float32), (label, np.arange(n))), shape=(n, n))
    S = np.asarray(onehot.tocsr() @ x, dtype=np.float32)  # (n, d) member sums per cluster id
    del onehot
    k = nbr.shape[1]
    src = np.repeat(label, k)
    dst = nbr.reshape(-1)
    ok = dst >= 0
    a, b = src[ok], label[dst[ok]]
    del src, dst, ok
    a, b, _ = _unique_pairs(a, b, n)
    val = _average(S, B, sizes, a, b)
    forbid = (cannot[:, 0], cannot[:, 1]) if cannot.size else None
    roots_before = n
    for outer in range(max_refresh + 1):
        label, a, b, val, merged = _rnn_rounds(
            label, S, B, sizes, a, b, val, threshold=threshold, forbid=forbid, max_rounds=max_rounds
        )
        # stop once a pass merges (almost) nothing: later passes only repeat the search
        if outer == max_refresh or (outer > 0 and merged <= 1e-3 * roots_before):
            break
        # Parts of one writer whose slips are never among each other's k nearest (e.g. one
        # writer on two printed forms) share no kNN edge; their aggregated descriptors do
        # meet, so add the kNN pairs of cluster centroids as candidates and go on.
        # Exact search over the largest clusters' centroids: the printed form is a strong
        # shared direction, so approximate indexes (IVF cells, HNSW links) group centroids
        # by form and miss a writer's other-form parts (measured at 3e5 synthetic slips:
        # 113 of the 200 largest writers stayed split, parts at average cosine 0.55-0.70).
        # Clusters with >= 5 slips, at most 50k of them, bound the exact search.
        roots = np.flatnonzero(sizes >= 5)
        if roots.size > 50_000:
            roots = roots[np.argsort(-sizes[roots], kind="stable")[:50_000]]
        if roots.size < 2:
            break
        roots_before = roots.size
        cent_nbr, _ = knn_graph(S[roots], k=min(k, roots.size - 1), exact_below=roots.size + 1)
        ca = np.repeat(roots, cent_nbr.shape[1])
        cb = np.where(cent_nbr >= 0, roots[np.maximum(cent_nbr, 0)], -1).reshape(-1)
        ca, cb = ca[cb >= 0], cb[cb >= 0]
        ca, cb, _ = _unique_pairs(ca, cb, n)
        fresh = ~np.isin(ca * n + cb, a * n + b)
        ca, cb = ca[fresh], cb[fresh]
        cv_ = _average(S, B, sizes, ca, cb)
        if not (cv_ >= threshold).any():
            break
        a, b, val = np.concatenate([a, ca]), np.concatenate([b, cb]), np.concatenate([val, cv_])
    return label


def _average(
    S: NDArray[np.float32], B: NDArray[np.float64] | None, sizes: NDArray, a: NDArray, b: NDArray
) -> NDArray[np.float64]:
    """Average (adjusted) score between clusters a and b from member sums S and offset sums B."""
    val = _rowwise_dot(S, a, b) / (sizes[a] * sizes[b])
    if B is not None:
        val -= 0.5 * (B[a] / sizes[a] + B[b] / sizes[b])
    return val


def _rnn_rounds(
    label: NDArray[np.int64],
    S: NDArray[np.float32],
    B: NDArray[np.float64] | None,
    sizes: NDArray[np.float64],
    a: NDArray[np.int64],
    b: NDArray[np.int64],
    val: NDArray[np.float64],
    *,
    threshold: float,
    forbid: tuple[NDArray[np.int64], NDArray[np.int64]] | None,
    max_rounds: int,
) -> tuple[NDArray, NDArray, NDArray, NDArray, int]:
    """Merge reciprocal best pairs above the threshold until none is left (S, B, sizes in
    place)."""
    n = label.size
    merged = 0
    for _ in range(max_rounds):
        usable = val >= threshold
        if forbid is not None:
            fa, fb, _ = _unique_pairs(label[forbid[0]], label[forbid[1]], n)
            usable &= ~np.isin(a * n + b, fa * n + fb)
        if not usable.any():
            break
        ua, ub, uv = a[usable], b[usable], val[usable]
        # best partner of every cluster over both directions (ties: lower id)
        qa, qb, qv = np.concatenate([ua, ub]), np.concatenate([ub, ua]), np.concatenate([uv, uv])
        order = np.lexsort((qb, -qv, qa))
        first = np.ones(order.size, dtype=bool)
        first[1:] = qa[order][1:] != qa[order][:-1]
        best = np.full(n, -1, dtype=np.int64)
        best[qa[order][first]] = qb[order][first]
        cand = np.flatnonzero(best >= 0)
        partner = best[cand]
        rnn = (best[partner] == cand) & (cand < partner)
        keep, gone = cand[rnn], partner[rnn]
        if keep.size == 0:
            break
        merged += keep.size
        S[keep] += S[gone]
        if B is not None:
            B[keep] += B[gone]
        sizes[keep] += sizes[gone]
        sizes[gone] = 0
        remap = np.arange(n, dtype=np.int64)
        remap[gone] = keep
        label = remap[label]
        a, b = remap[a], remap[b]
        # only pairs touching a merged cluster change their average
        changed = np.zeros(n, dtype=bool)
        changed[keep] = True
        stale = changed[a] | changed[b]
        sa, sb, _ = _unique_pairs(a[stale], b[stale], n)
        sv = _average(S, B, sizes, sa, sb)
        a = np.concatenate([a[~stale], sa])
        b = np.concatenate([b[~stale], sb])
        val = np.concatenate([val[~stale], sv])
    return label, a, b, val, merged


def _unique_pairs(a: NDArray, b: NDArray, n: int) -> tuple[NDArray, NDArray, NDArray]:
    """Unordered distinct pairs with a != b, as (lo, hi, first-occurrence index)."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    diff = lo != hi
    idx = np.flatnonzero(diff)
    key = lo[idx] * n + hi[idx]
    _, first = np.unique(key, return_index=True)
    pick = idx[first]
    return lo[pick], hi[pick], pick


def _attach(
    labels: NDArray[np.int64],
    nbr: NDArray[np.int64],
    sim: NDArray[np.float32],
    cannot: NDArray[np.int64],
    *,
    threshold: float,
    top_m: int,
) -> NDArray[np.int64]:
    """One pass: each slip on its own joins the cluster whose evidence clears the threshold.

    Uses the pre-pass labels only, so attached slips never chain further slips in.
    """
    lone = np.flatnonzero(labels < 0)
    if lone.size == 0 or not (labels >= 0).any():
        return labels
    k = nbr.shape[1]
    nb = nbr[lone]
    nb_lab = np.where(nb >= 0, labels[np.maximum(nb, 0)], -1)
    ok = nb_lab >= 0
    rows = np.repeat(np.arange(lone.size), k)[ok.reshape(-1)]
    sizes = np.bincount(labels[labels >= 0])
    g_rows, g_lab, ev = _group_evidence(
        rows,
        nb_lab[ok],
        sim[lone][ok],
        sim[lone, k - 1],
        sizes[nb_lab[ok]],
        top_m=top_m,
    )
    b_rows, b_lab, b_ev = _best_per_row(g_rows, g_lab, ev)
    join = b_ev >= threshold
    out = labels.copy()
    out[lone[b_rows[join]]] = b_lab[join]
    if cannot.size:
        # undo attachments that put a cannot-link pair together (the weaker one leaves)
        strength = np.full(labels.size, np.inf)
        strength[lone[b_rows[join]]] = b_ev[join]
        for a, b in cannot.tolist():
            if out[a] >= 0 and out[a] == out[b]:
                out[a if strength[a] <= strength[b] else b] = -1
    return out


def _renumber(labels: NDArray[np.int64]) -> NDArray[np.int64]:
    """Labels 0..C-1 in order of each cluster's first row; -1 stays -1."""
    out = np.full(labels.shape, -1, dtype=np.int64)
    ok = labels >= 0
    if ok.any():
        uniq, first, inverse = np.unique(labels[ok], return_index=True, return_inverse=True)
        rank = np.empty(uniq.size, dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(uniq.size)
        out[ok] = rank[inverse]
    return out


def membership_confidence(
    X: ArrayLike | None,
    labels: ArrayLike,
    *,
    threshold: float | None = None,
    k: int = 10,
    top_m: int = 3,
    temperature: float = DEFAULT_TEMPERATURE,
    neighbours: tuple[NDArray[np.int64], NDArray[np.float32]] | None = None,
    calibration: Calibration | None = None,
    offsets: ArrayLike | None = None,
) -> NDArray[np.float32]:
    """Confidence 0..1 that each slip belongs to its cluster.

    The slip-to-cluster evidence against its own cluster's other members (mean of the top-m
    similarities, unseen members counted at the k-th neighbour's similarity) through the
    logistic :func:`confidence_from_evidence` (0.5 at ``threshold``), or through the
    calibrated logistic of ``calibration`` when given.

    Parameters
    ----------
    X : (n, d) array_like or None
        Embeddings; may be None when ``neighbours`` is given.
    labels : (n,) int array_like
        Cluster labels, -1 = on its own (confidence 0).
    neighbours : ((n, k) int64, (n, k) float32), optional
        A precomputed :func:`knn_graph` result.
    offsets : (n,) array_like, optional
        Score offsets (:func:`score_offsets`) when the thresholds are on adjusted scores.

    Returns
    -------
    (n,) float32
    """
    cal = _calibration(threshold, calibration, temperature)
    lab = np.asarray(labels, dtype=np.int64)
    if lab.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {lab.shape}")
    if neighbours is None:
        if X is None:
            raise ValueError("X must be given when neighbours is None")
        nbr, sim = knn_graph(X, k=k)
    else:
        nbr, sim = neighbours
    nbr, sim = _adjusted(nbr, sim, None if offsets is None else np.asarray(offsets, np.float32))
    n, kk = nbr.shape
    if n != lab.size:
        raise ValueError(f"labels has {lab.size} entries but there are {n} slips")
    out = np.zeros(n, dtype=np.float32)
    members = np.flatnonzero(lab >= 0)
    if members.size == 0:
        return out
    nb = nbr[members]
    own = lab[members]
    same = (nb >= 0) & (lab[np.maximum(nb, 0)] == own[:, None])
    rows = np.repeat(np.arange(members.size), kk)[same.reshape(-1)]
    sizes = np.bincount(own)
    kth = sim[members, kk - 1]
    g_rows, _, ev = _group_evidence(
        rows, own[rows], sim[members][same], kth, sizes[own[rows]] - 1, top_m=top_m
    )
    # a member with no same-cluster neighbour (e.g. held in by a must-link) scores at most
    # the k-th neighbour's similarity
    evidence = np.nan_to_num(kth.astype(np.float64), neginf=-1.0)
    evidence[g_rows] = ev
    out[members] = cal.confidence(evidence)
    return out


# -- calibration ------------------------------------------------------------------------------
def calibrate_threshold(
    X: ArrayLike,
    writers: ArrayLike,
    *,
    target_precision: float = 0.98,
    k: int = 10,
    thresholds: ArrayLike | None = None,
    neighbours: tuple[NDArray[np.int64], NDArray[np.float32]] | None = None,
    domains: ArrayLike | None = None,
    **cluster_options: object,
) -> dict[str, object]:
    """The operating point: the threshold with the best pairwise recall at the target precision.

    Runs :func:`cluster_embeddings` over a grid of thresholds on one kNN graph of labelled
    (held-out) slips and scores each clustering against the true writers with
    :func:`cv.metrics.clustering_scores`.

    Parameters
    ----------
    X : (n, d) array_like
    writers : (n,) array_like
        True writer of each slip.
    target_precision : float
        Pairwise precision the operating point must reach.
    thresholds : (t,) array_like, optional
        Grid; default 0.30 .. 0.95 in steps of 0.01 (from -0.20 with ``offsets``).
    domains : (n,) array_like, optional
        The source of each slip (e.g. generated slips, real handwriting): each curve point
        then also counts the pairs within each source (``by_domain``).

    Returns
    -------
    dict with ``threshold`` (None when no grid point reaches the target), the scores there
    (``pairwise_precision``, ``pairwise_recall``, ``pairwise_f1``, ``ari``, ``bcubed_f1``...),
    ``best_f1_threshold`` and ``curve``: a list of {threshold, precision, recall, f1, ari}.
    """
    from cv.metrics import clustering_scores, pair_counts

    w = np.asarray(writers)
    if neighbours is None:
        neighbours = knn_graph(X, k=k)
    if w.shape != (neighbours[0].shape[0],):
        raise ValueError(f"writers must have one entry per row of X, got shape {w.shape}")
    # adjusted scores (offsets given) sit lower than raw cosine
    dom = None if domains is None else np.asarray(domains).astype(str)
    if dom is not None and dom.shape != w.shape:
        raise ValueError(f"domains must have one entry per row of X, got shape {dom.shape}")
    start = -0.20 if cluster_options.get("offsets") is not None else 0.30
    grid = np.round(np.arange(start, 0.951, 0.01), 4) if thresholds is None else thresholds
    curve, full = [], []
    for t in np.asarray(grid, dtype=np.float64).tolist():
        labels = cluster_embeddings(X, threshold=t, neighbours=neighbours, **cluster_options)  # type: ignore[arg-type]
        sc = clustering_scores(w, labels)
        full.append((t, sc))
        right, linked, true_pairs = pair_counts(w, labels)
        curve.append(
            {
                "threshold": t,
                "precision": sc["pairwise_precision"],
                "recall": sc["pairwise_recall"],
                "f1": sc["pairwise_f1"],
                "ari": sc["ari"],
                # counts, so that curves of several folds can be pooled
                "right_pairs": right,
                "linked_pairs": linked,
                "true_pairs": true_pairs,
            }
        )
        if dom is not None:
            curve[-1]["by_domain"] = {
                d: list(pair_counts(w[dom == d], labels[dom == d])) for d in np.unique(dom)
            }
    ok = [(sc["pairwise_recall"], -t, t, sc) for t, sc in full]
    # a clustering that links nothing has precision 1 by convention: not an operating point
    ok = [
        o
        for o in ok
        if o[3]["pairwise_precision"] >= target_precision and o[3]["pairwise_recall"] > 0
    ]
    best_f1 = max(full, key=lambda p: p[1]["pairwise_f1"])
    result: dict[str, object] = {
        "target_precision": target_precision,
        "best_f1_threshold": best_f1[0],
        "best_f1": best_f1[1]["pairwise_f1"],
        "curve": curve,
    }
    if not ok:
        result["threshold"] = None
        return result
    _, _, t_best, sc_best = max(ok, key=lambda o: (o[0], o[1]))
    result["threshold"] = t_best
    result.update(sc_best)
    return result


@dataclass(frozen=True)
class Calibration:
    """The operating points of one embedding model, chosen on labelled fit data.

    Two thresholds answer two questions and are not interchangeable:

    ``pair_threshold``
        Cosine similarity at which two *single slips* are called the same writer with the
        target pairwise precision (over all slip pairs).  Used only where two slips are
        compared one to one: two unclustered slips founding a cluster, a slip's nearest
        stored slips in an identity check.
    ``merge_threshold``
        The *average* similarity at which clusters merge (batch average linkage) and a slip
        joins a cluster (its slip-to-cluster evidence), chosen so that clustering the fit
        data reaches the target pairwise precision.  An average over many noisy pairs is
        a different quantity from one pair's similarity, so it gets its own operating point.

    ``slope`` and ``midpoint`` define the calibrated confidence
    ``1 / (1 + exp(-slope * (evidence - midpoint)))``: a logistic fit of "same writer" on the
    slip-to-cluster evidence of fit slips against the writers among their neighbours, so a
    confidence of 0.9 means about 9 in 10 such links were right on the fit data.
    """

    pair_threshold: float
    merge_threshold: float
    slope: float
    midpoint: float
    target_precision: float = 0.98
    recall: float | None = None  # pairwise recall of the fit-data clustering at merge_threshold
    calibrated: bool = True  # False: derived from a pair threshold alone (no fit data)
    # neighbour ranks of the score offsets when every threshold is on adjusted scores
    # (cos - (b_i + b_j) / 2, see score_offsets); None: raw cosine
    offset_ranks: tuple[int, int] | None = None
    typical_offset: float | None = None  # median offset of the calibration data (the fill)
    # slips at which a measured offset and the typical one weigh equally: a collection of n
    # slips gets n / (n + offset_prior) of its measured offsets (small ones little)
    offset_prior: float | None = None
    # the operating points of batch (re-)clustering on normalised scores, when measured
    batch: Calibration | None = None
    # the operating points of live assignment on normalised scores of plain (unaugmented)
    # vectors, when measured; None: live assignment stays on raw cosine (these points)
    live: Calibration | None = None
    # (neighbours, weight) of the database-side augmentation applied to the vectors before
    # every score these operating points were measured on (batch clustering); None: none
    augment: tuple[int, float] | None = None
    # offsets measured with each slip's same-account neighbours left out (ACCOUNT_EXTRA)
    account_aware: bool = False
    # (mean, sd) of the normal fitted to the upper tail of different-writer scores on the
    # calibration data, and that data's slips per fold: the thresholds rise with the
    # collection (:meth:`for_collection`); None: they hold at any size
    impostor_tail: tuple[float, float] | None = None
    fold_slips: float | None = None
    # mean cosine between two groups of slips below which they are called different writers
    # (:func:`distinct_writers_bound`); None: not measured (rules keep their own default)
    distinct_writers: float | None = None

    def for_collection(self, slips: int) -> Calibration:
        """These operating points for a collection of ``slips`` slips.

        A slip's chance of a different-writer score above a threshold is what the fit folds
        measured, but it meets ``slips - 1`` others instead of a fold's: with more slips
        come more look-alikes and pairwise precision falls (held-out generated writers at
        the fold-calibrated point: 0.970 with 30 writers, 0.922 with 240).  Above the folds'
        size both thresholds rise until each slip expects as many false links as it did in
        a fold, reading the chance off the fitted tail: ``sf(t') = sf(t) (m - 1) / (n - 1)``.
        Smaller collections keep the thresholds (their offsets are shrunk instead)."""
        if self.impostor_tail is None or not self.fold_slips or slips <= self.fold_slips:
            return self
        from scipy.special import ndtr, ndtri

        mean, sd = self.impostor_tail
        share = (self.fold_slips - 1.0) / (float(slips) - 1.0)

        def raised(t: float) -> float:
            if t >= 1.0:
                return t
            beyond = (1.0 - ndtr((t - mean) / sd)) * share
            return float(min(1.0, mean + sd * ndtri(1.0 - beyond))) if beyond > 0 else 1.0

        return replace(
            self,
            pair_threshold=raised(self.pair_threshold),
            merge_threshold=raised(self.merge_threshold),
            fold_slips=float(slips),
        )

    def offsets(
        self, similarities: ArrayLike, *, collection: int | None, skip: ArrayLike | None = None
    ) -> NDArray[np.float32] | None:
        """Score offsets of slips with these neighbour similarities (best first) in a
        collection of ``collection`` slips, None when the thresholds are on raw cosine.
        ``collection=None``: not shrunk, for ranking one slip's neighbours, where only the
        differences between offsets count (shrinking them cost held-out retrieval mAP
        0.730 -> 0.704).  ``skip`` (:func:`same_account`) is applied when the calibration
        was measured that way (``account_aware``), else ignored."""
        if self.offset_ranks is None:
            return None
        measured = score_offsets(
            similarities,
            self.offset_ranks,
            fill=self.typical_offset,
            skip=skip if self.account_aware else None,
        )
        return measured if collection is None else self.shrink(measured, collection=collection)

    def shrink(self, measured: ArrayLike, *, collection: int) -> NDArray[np.float32]:
        """Measured offsets pulled towards the typical one, the more the smaller the
        collection: in a small collection the 5th-15th nearest slips are far less close than
        in the fit folds, so unshrunk offsets run low and scores high (120 sample slips:
        pairwise precision 0.90 at the merge threshold, 1.00 shrunk with a prior of 500)."""
        return _shrunk(measured, self.typical_offset, self.offset_prior, collection)

    def confidence(self, evidence: ArrayLike) -> NDArray[np.float64]:
        """Calibrated probability-like confidence of slip-to-cluster (or slip) evidence."""
        e = np.nan_to_num(np.asarray(evidence, dtype=np.float64), neginf=-1.0)
        return 1.0 / (1.0 + np.exp(-float(self.slope) * (e - float(self.midpoint))))

    @classmethod
    def uncalibrated(cls, pair_threshold: float) -> Calibration:
        """What a model without fit-data calibration gets: its pair threshold for every
        decision and the fixed logistic (0.5 at the threshold)."""
        t = float(pair_threshold)
        return cls(t, t, 1.0 / DEFAULT_TEMPERATURE, t, calibrated=False)

    def to_json(self) -> dict[str, object]:
        # the bound only when measured: older files' calibrations (and digests) stay as they were
        bound = self.distinct_writers
        measured: dict[str, object] = {} if bound is None else {"distinct_writers": bound}
        if self.live is not None:
            measured["live"] = self.live.to_json()
        return {
            "pair_threshold": self.pair_threshold,
            "merge_threshold": self.merge_threshold,
            "slope": self.slope,
            "midpoint": self.midpoint,
            "target_precision": self.target_precision,
            "recall": self.recall,
            "calibrated": self.calibrated,
            "offset_ranks": None if self.offset_ranks is None else list(self.offset_ranks),
            "typical_offset": self.typical_offset,
            "offset_prior": self.offset_prior,
            "batch": None if self.batch is None else self.batch.to_json(),
            "augment": None if self.augment is None else list(self.augment),
            "account_aware": self.account_aware,
            "impostor_tail": None if self.impostor_tail is None else list(self.impostor_tail),
            "fold_slips": self.fold_slips,
            **measured,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Calibration:
        try:
            values = {
                name: float(data[name])  # type: ignore[arg-type]
                for name in ("pair_threshold", "merge_threshold", "slope", "midpoint")
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"calibration: missing or bad field ({exc})") from exc
        recall = data.get("recall")
        ranks = data.get("offset_ranks")
        typical = data.get("typical_offset")
        prior = data.get("offset_prior")
        batch = data.get("batch")
        if batch is not None and not isinstance(batch, Mapping):
            raise ValueError("calibration: batch must be an object")
        live = data.get("live")
        if live is not None and not isinstance(live, Mapping):
            raise ValueError("calibration: live must be an object")
        if ranks is not None:
            try:
                lo, hi = (int(r) for r in ranks)  # type: ignore[attr-defined]
            except (TypeError, ValueError) as exc:
                raise ValueError(f"calibration: bad offset_ranks {ranks!r}") from exc
        augment = data.get("augment")
        if augment is not None:
            try:
                k_aug, w_aug = augment  # type: ignore[misc]
                augment = (int(k_aug), float(w_aug))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"calibration: bad augment {augment!r}") from exc
            if augment[0] < 1 or not augment[1] > 0:
                raise ValueError(f"calibration: bad augment {list(augment)!r}")
        tail = data.get("impostor_tail")
        if tail is not None:
            try:
                tail_mean, tail_sd = (float(v) for v in tail)  # type: ignore[attr-defined]
            except (TypeError, ValueError) as exc:
                raise ValueError(f"calibration: bad impostor_tail {tail!r}") from exc
            if not tail_sd > 0:
                raise ValueError(f"calibration: bad impostor_tail {tail!r}")
            tail = (tail_mean, tail_sd)
        fold_slips = data.get("fold_slips")
        distinct = data.get("distinct_writers")
        if distinct is not None:
            try:
                distinct = float(distinct)  # type: ignore[arg-type]
            except (TypeError, ValueError) as exc:
                raise ValueError(f"calibration: bad distinct_writers {distinct!r}") from exc
            if not -1.0 <= distinct <= 1.0:
                raise ValueError(f"calibration: bad distinct_writers {distinct!r}")
        return cls(
            **values,
            target_precision=float(data.get("target_precision", 0.98)),  # type: ignore[arg-type]
            recall=None if recall is None else float(recall),  # type: ignore[arg-type]
            calibrated=bool(data.get("calibrated", True)),
            offset_ranks=None if ranks is None else (lo, hi),
            typical_offset=None if typical is None else float(typical),  # type: ignore[arg-type]
            offset_prior=None if prior is None else float(prior),  # type: ignore[arg-type]
            batch=None if batch is None else cls.from_json(batch),
            live=None if live is None else cls.from_json(live),
            augment=augment,  # type: ignore[arg-type]
            account_aware=bool(data.get("account_aware", False)),
            impostor_tail=tail,  # type: ignore[arg-type]
            fold_slips=None if fold_slips is None else float(fold_slips),  # type: ignore[arg-type]
            distinct_writers=distinct,  # type: ignore[arg-type]
        )


def calibration_of(model: object) -> Calibration:
    """The model's calibration (``calibration_``, a `Calibration` or its JSON), else one
    derived from its pair threshold (``threshold_``), else from `DEFAULT_THRESHOLD`."""
    found = getattr(model, "calibration_", None)
    if isinstance(found, Calibration):
        return found
    if isinstance(found, Mapping):
        return Calibration.from_json(found)
    pair = getattr(model, "threshold_", None)
    usable = pair is not None and -1.0 <= float(pair) < 1.0
    return Calibration.uncalibrated(float(pair) if usable else DEFAULT_THRESHOLD)  # type: ignore[arg-type]


def _evidence_samples(
    neighbours: tuple[NDArray[np.int64], NDArray[np.float32]], writers: NDArray, *, top_m: int
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Each fit slip's best slip-to-writer evidence among the writers of its neighbours
    (the slip itself left out: the writer incremental assignment would pick), and whether
    that writer is its own."""
    _, code = np.unique(writers, return_inverse=True)
    code = code.astype(np.int64)
    nbr, sim = neighbours
    n, kk = nbr.shape
    ok = nbr >= 0
    rows = np.repeat(np.arange(n), kk)[ok.reshape(-1)]
    labs = code[nbr[ok]]
    sizes = np.bincount(code)
    avail = sizes[labs] - (labs == code[rows]).astype(np.int64)
    g_rows, g_lab, ev = _group_evidence(rows, labs, sim[ok], sim[:, kk - 1], avail, top_m=top_m)
    b_rows, b_lab, b_ev = _best_per_row(g_rows, g_lab, ev)
    return b_ev, b_lab == code[b_rows]


def _fit_logistic(x: NDArray[np.float64], y: NDArray[np.bool_]) -> tuple[float, float] | None:
    """(slope, midpoint) of P(y | x) = 1 / (1 + exp(-slope (x - midpoint))) by Newton's method
    with a small ridge; None when one class is missing or the fit is not increasing."""
    if x.size < 2 or y.all() or not y.any():
        return None
    a, b = 0.0, 0.0  # logit = a * x + b
    t = y.astype(np.float64)
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(a * x + b)))
        w = np.maximum(p * (1.0 - p), 1e-9)
        g = np.array([np.sum((p - t) * x) + 1e-3 * a, np.sum(p - t)])
        h = np.array([[np.sum(w * x * x) + 1e-3, np.sum(w * x)], [np.sum(w * x), np.sum(w)]])
        step = np.linalg.solve(h, g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-9:
            break
    if not np.isfinite(a) or a <= 0:
        return None
    return float(a), float(-b / a)


def calibrate_clustering(
    folds: Iterable[tuple[ArrayLike, ArrayLike]],
    *,
    target_precision: float = 0.98,
    k: int = 10,
    top_m: int = 3,
    offset_ranks: tuple[int, int] | None = None,
    offset_prior: float | None = None,
    domains: Sequence[ArrayLike | None] | None = None,
) -> Calibration:
    """Both operating points and the confidence logistic from labelled fit data.

    Parameters
    ----------
    folds : iterable of ((n, d) embeddings, (n,) writers[, (n,) accounts])
        Held-out folds of the fit data: similarities are compared within a fold only (each
        fold may come from a projection fitted on the other writers).  With accounts (the
        customer account of each slip, None or "" when anonymous) the offsets leave each
        slip's own account's slips out (:func:`same_account`) and the calibration records
        it (``account_aware``), so clustering must then be given the accounts too.
    target_precision : float
        Pairwise precision both thresholds must reach.
    offset_ranks : (lo, hi), optional
        Calibrate on adjusted scores (:func:`score_offsets` over these neighbour ranks
        within each fold) instead of raw cosine.
    offset_prior : float, optional
        With ``offset_ranks``: shrink each fold's offsets towards their median by its size
        (:meth:`Calibration.shrink`), as every later use does.
    domains : sequence of (n,) array_like or None, optional
        One per fold: the source of each slip (generated slips, real handwriting, an
        operator's own...).  Both thresholds then reach the target within every source
        with :data:`MIN_DOMAIN_PAIRS` true pairs, not only over all pairs pooled.

    Returns
    -------
    Calibration
        ``merge_threshold`` is the operating point of all folds' pairs pooled
        (:func:`_pooled_operating_point`) and ``recall`` the folds' mean pairwise recall at
        it; without an operating point the merge threshold is 1.0 (nothing merges) and
        recall 0.
    """
    from cv.metrics import clustering_scores, precision_threshold

    given = [tuple(f) for f in folds]
    if domains is not None and len(domains) != len(given):
        raise ValueError(f"domains must have one entry per fold ({len(given)}), not {len(domains)}")
    sources = [
        None if d is None else np.asarray(d).astype(str) for d in domains or [None] * len(given)
    ]
    by_account = offset_ranks is not None and any(len(f) > 2 for f in given)
    accounts = [np.asarray(f[2]) if len(f) > 2 else None for f in given]
    data = [(np.asarray(f[0], dtype=np.float32), np.asarray(f[1])) for f in given]
    keep = [i for i, (x, w) in enumerate(data) if len(w) >= 3 and len(set(w.tolist())) >= 2]
    data, accounts = [data[i] for i in keep], [accounts[i] for i in keep]
    sources = [sources[i] for i in keep]
    if not data:
        raise ValueError("calibration needs a fold of at least 3 slips from 2+ writers")
    scores, same, evidence, right, pair_sources = [], [], [], [], []
    impostors = []  # different-writer scores for the tail: all of them, or a random sample
    graphs, curves = [], []
    for x, w in data:
        kk = min(int(k), len(w) - 1)
        extra = ACCOUNT_EXTRA if by_account else 0
        band_end = kk if offset_ranks is None else int(offset_ranks[1]) + extra
        wide = min(max(kk, band_end), len(w) - 1)
        graphs.append(knn_graph(x, k=wide))
    measured = [
        None
        if offset_ranks is None
        else score_offsets(g[1], offset_ranks, skip=None if a is None else same_account(g[0], a))
        for g, a in zip(graphs, accounts, strict=True)
    ]
    typical = None
    if offset_ranks is not None:
        typical = float(np.median(np.concatenate([m for m in measured if m is not None])))
    fold_offsets = [
        None if m is None else _shrunk(m, typical, offset_prior, len(m)) for m in measured
    ]
    for (x, w), (nbr, sim), b, src in zip(data, graphs, fold_offsets, sources, strict=True):
        z = normalise_rows(x, name="X")
        src = np.full(len(w), "") if src is None else src
        kk = min(int(k), len(w) - 1)
        wide = nbr.shape[1]
        shift = np.zeros(len(w), np.float32) if b is None else 0.5 * b
        if len(w) <= 4000:  # every pair; beyond that the pairs among neighbours
            iu = np.triu_indices(len(w), k=1)
            scores.append((z @ z.T)[iu] - shift[iu[0]] - shift[iu[1]])
            same.append(w[iu[0]] == w[iu[1]])
            pair_sources.append((src[iu[0]], src[iu[0]] == src[iu[1]]))
            impostors.append(scores[-1][~same[-1]])
        else:
            # a fixed random sample of pairs stands for all of them in the tail
            pick = np.random.default_rng(0).integers(0, len(w), size=(2, _TAIL_SAMPLE))
            pick = pick[:, (pick[0] != pick[1]) & (w[pick[0]] != w[pick[1]])]
            dots = _rowwise_dot(z, pick[0], pick[1], chunk=50_000)
            impostors.append(dots - shift[pick[0]] - shift[pick[1]])
            adj_nbr, adj_sim = _adjusted(nbr, sim, b)
            ok = adj_nbr >= 0
            rows = np.repeat(np.arange(len(w)), wide)[ok.reshape(-1)]
            scores.append(adj_sim[ok])
            same.append(w[rows] == w[adj_nbr[ok]])
            a_src, b_src = src[rows], src[adj_nbr[ok]]
            pair_sources.append((a_src, a_src == b_src))
        graph = (nbr[:, :kk], sim[:, :kk])
        ev, hit = _evidence_samples(_adjusted(*graph, b), w, top_m=top_m)
        evidence.append(ev)
        right.append(hit)
        op = calibrate_threshold(
            z,
            w,
            target_precision=target_precision,
            neighbours=graph,
            offsets=b,
            domains=None if domains is None else src,
        )
        curves.append(op["curve"])  # type: ignore[arg-type]
    all_scores, all_same = np.concatenate(scores), np.concatenate(same)
    pair = precision_threshold(all_scores, all_same, target_precision=target_precision)
    pair_threshold = float(min(pair["threshold"], 1.0))
    if domains is not None:  # and within every source with enough true pairs
        first = np.concatenate([p[0] for p in pair_sources])
        one_source = np.concatenate([p[1] for p in pair_sources])
        for d in np.unique(first[one_source]):
            m = one_source & (first == d)
            if int(all_same[m].sum()) >= MIN_DOMAIN_PAIRS:
                got = precision_threshold(
                    all_scores[m], all_same[m], target_precision=target_precision
                )
                pair_threshold = max(pair_threshold, float(min(got["threshold"], 1.0)))
    tail = impostor_tail(np.concatenate(impostors))
    merge = _pooled_operating_point(curves, target_precision)
    recalls = []
    if merge < 1.0:
        for (x, w), b in zip(data, fold_offsets, strict=True):
            labels = cluster_embeddings(x, threshold=merge, k=min(int(k), len(w) - 1), offsets=b)
            recalls.append(clustering_scores(w, labels)["pairwise_recall"])
    fit = _fit_logistic(np.concatenate(evidence), np.concatenate(right))
    slope, midpoint = fit if fit is not None else (1.0 / DEFAULT_TEMPERATURE, merge)
    return Calibration(
        pair_threshold=pair_threshold,
        merge_threshold=float(merge),
        slope=slope,
        midpoint=midpoint,
        target_precision=float(target_precision),
        recall=float(np.mean(recalls)) if recalls else 0.0,
        offset_ranks=None if offset_ranks is None else (int(offset_ranks[0]), int(offset_ranks[1])),
        typical_offset=typical,
        offset_prior=None if offset_ranks is None or offset_prior is None else float(offset_prior),
        account_aware=by_account,
        impostor_tail=tail,
        fold_slips=None
        if tail is None
        else _fold_slips(data, sources, curves, merge, target_precision),
    )


def distinct_writers_bound(
    folds: Sequence[tuple[ArrayLike, ArrayLike]],
    *,
    domains: Sequence[ArrayLike | None] | None = None,
    rate: float = DISTINCT_WRITERS_RATE,
) -> float | None:
    """The mean cosine below which two groups of slips are called different writers, such
    that one writer's slips split in two groups fall below it for at most ``rate`` of the
    writers of every source.

    ``folds`` are (embeddings, writers) of writers the projection did not see.  Each writer
    with 4+ slips is split into alternate halves (in the fold's order) and scores the mean
    cosine between them: the case of one writer's slips that the clusterer left in two
    clusters.  The bound is the ``rate`` quantile of those scores as a normal matched to
    their lower quartiles sees it (:func:`_lower_tail`), per source (``domains``, per fold
    and slip) with :data:`MIN_BOUND_WRITERS` writers, and the lowest of them: the source
    whose writers vary most sets it.  None when no source has enough writers.

    A fixed bound does not survive a refit: a model's cosines have their own scale.
    Session 14 measured the shipped model's fit folds: at 0.2, 1.0 % of generated writers
    and 5.6 % of real-handwriting writers fell below it, and 20.8 % of the 77 held-out
    UNIPEN writers (the fit folds flatter real handwriting: see :data:`DISTINCT_WRITERS_RATE`).
    """
    scores: dict[str, list[float]] = {}
    for i, (x, w) in enumerate(folds):
        src = None if domains is None or domains[i] is None else np.asarray(domains[i])
        firsts, halves_a, halves_b = writer_halves(x, w)
        for first, a, b in zip(firsts, halves_a, halves_b, strict=True):
            key = "" if src is None else str(src[first])
            scores.setdefault(key, []).append(float(a @ b))
    bounds = [_lower_tail(v, rate) for v in scores.values() if len(v) >= MIN_BOUND_WRITERS]
    return min(bounds) if bounds else None


def _lower_tail(scores: Sequence[float], rate: float) -> float:
    """The ``rate`` quantile of the normal matched to the scores' 10th and 25th percentiles:
    a few dozen writers pin those, not a 1 % quantile (the lowest score or two; on the
    shipped model's fit data two fold draws gave 0.134 and 0.183 for it)."""
    from scipy.special import ndtri

    q10, q25 = np.quantile(np.asarray(scores, dtype=np.float64), [0.10, 0.25])
    z10, z25 = float(ndtri(0.10)), float(ndtri(0.25))
    sd = max((float(q25) - float(q10)) / (z25 - z10), 0.0)
    return float(q25) + sd * (float(ndtri(rate)) - z25)


def writer_halves(
    x: ArrayLike, writers: ArrayLike
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """Each writer with 4+ slips split into alternate halves (in row order): the row of his
    first slip and the two halves' mean vectors, (m,), (m, d), (m, d).  For unit vectors the
    dot product of two means is the mean cosine over the pairs between the two groups."""
    z = np.asarray(x, dtype=np.float64)
    labels = np.asarray(writers)
    firsts, a, b = [], [], []
    for writer in np.unique(labels):
        rows = np.flatnonzero(labels == writer)
        if len(rows) >= 4:
            firsts.append(int(rows[0]))
            a.append(z[rows[0::2]].mean(axis=0))
            b.append(z[rows[1::2]].mean(axis=0))
    d = z.shape[1] if z.ndim == 2 else 0
    return (
        np.asarray(firsts, dtype=np.int64),
        np.asarray(a).reshape(-1, d),
        np.asarray(b).reshape(-1, d),
    )


def impostor_tail(scores: ArrayLike) -> tuple[float, float] | None:
    """(mean, sd) of the normal whose upper tail matches these different-writer scores'
    at two levels (the top 0.1 % and 0.01 %, or the top 100 and 10 scores of fewer than
    10^5), None with fewer than 10^4 scores.  The far tail of cosine-like scores falls off
    faster than an exponential (mean excess over the 99th, 99.9th, 99.99th percentiles of the
    shipped model's fit folds 0.08, 0.06, 0.03), as a normal's does."""
    from scipy.special import ndtri

    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    m = s.size
    if m < 10_000:
        return None
    p1, p2 = max(1e-3, 100.0 / m), max(1e-4, 10.0 / m)
    q1, q2 = np.quantile(s, [1.0 - p1, 1.0 - p2])
    z1, z2 = float(ndtri(1.0 - p1)), float(ndtri(1.0 - p2))
    sd = (float(q2) - float(q1)) / (z2 - z1)
    if not sd > 0:
        return None
    return float(q1) - sd * z1, sd


def _fold_slips(
    data: list[tuple[NDArray[np.float32], NDArray]],
    sources: list[NDArray | None],
    curves: list[list[dict]],
    merge: float,
    target_precision: float,
) -> float:
    """Slips per fold among which the merge threshold was set: the fold's, or when one
    source's own operating point set it (:func:`_pooled_operating_point`), that source's
    slips per fold (the smallest such source), the size a collection is compared with
    (:meth:`Calibration.for_collection`)."""
    setters = [d for d, t in _source_points(curves, target_precision).items() if t == merge]
    sizes = [np.mean([0 if s is None else int((s == d).sum()) for s in sources]) for d in setters]
    sizes = [float(v) for v in sizes if v >= 2]
    return min(sizes) if sizes else float(np.mean([len(w) for _, w in data]))


def _best_point(counts: list[tuple[float, int, int, int]], target_precision: float) -> float:
    """The threshold with the best pairwise recall at the target precision among
    (threshold, right, linked, true pairs) counts; 1.0 when none reaches it."""
    best: tuple[float, float, float] | None = None
    for t, right, linked, true_pairs in counts:
        if not right or right < target_precision * linked:
            continue  # linking nothing is not an operating point
        candidate = (right / max(true_pairs, 1), -t, t)
        best = candidate if best is None or candidate > best else best
    return 1.0 if best is None else best[2]


def _pooled_operating_point(curves: list[list[dict]], target_precision: float) -> float:
    """The merge threshold with the best pairwise recall at the target precision over the
    pairs of all folds together (1.0 when none reaches it), and at least that of each source
    of slips the curves count apart (``by_domain``) with :data:`MIN_DOMAIN_PAIRS` true pairs.

    Pooled, not per fold: the strictest fold's own operating point (the rule before) hung on
    a few wrong merges of one fold, and moved with the hash that splits the writers into
    folds (0.33 or 0.42 for one model's augmented batch scores, held-out recall 0.19 or
    0.01).  Per source too: pooled, the shipped model's generated fit slips outnumber its
    real handwriting and set the point (0.36) where the real handwriting's pairs reach only
    precision 0.941 (0.985 at 0.38, 1.000 at 0.40)."""
    pooled = _best_point(
        [
            (
                float(points[0]["threshold"]),
                sum(p["right_pairs"] for p in points),
                sum(p["linked_pairs"] for p in points),
                sum(p["true_pairs"] for p in points),
            )
            for points in zip(*curves, strict=True)
        ],
        target_precision,
    )
    return max([pooled, *_source_points(curves, target_precision).values()])


def _source_points(curves: list[list[dict]], target_precision: float) -> dict[str, float]:
    """The operating point (:func:`_best_point`) of each source's pairs pooled over the folds
    (``by_domain`` counts), for the sources with :data:`MIN_DOMAIN_PAIRS` true pairs."""
    grid = list(zip(*curves, strict=True))
    sources = {d for points in grid for p in points for d in p.get("by_domain", {})}
    out = {}
    for d in sorted(sources):
        counts = []
        for points in grid:
            per_fold = np.array([p.get("by_domain", {}).get(d, (0, 0, 0)) for p in points])
            right, linked, true_pairs = (int(v) for v in per_fold.sum(axis=0))
            counts.append((float(points[0]["threshold"]), right, linked, true_pairs))
        if counts and counts[0][3] >= MIN_DOMAIN_PAIRS:
            out[d] = _best_point(counts, target_precision)
    return out


# -- incremental assignment -------------------------------------------------------------------
@dataclass(frozen=True)
class Assignment:
    """Outcome of assigning one new slip.

    ``cluster_id`` is the existing cluster to join, or None.  When None and
    ``joined_slip_ids`` is not empty, the slip and those unclustered neighbours start a new
    cluster; when both are empty the slip stays on its own.  ``confidence`` is the logistic of
    the best evidence (>= 0.5 exactly when it cleared the threshold); ``evidence`` the
    slip-to-cluster (or slip-to-slip) score it came from, and ``neighbours`` the scores the
    decision used (adjusted scores when the calibration has ``offset_ranks``).
    """

    cluster_id: int | None
    confidence: float
    evidence: float
    neighbours: list[tuple[int, float]] = field(default_factory=list)
    joined_slip_ids: list[int] = field(default_factory=list)
    offset: float | None = None  # the slip's score offset when the calibration normalises
    # offsets computed here for neighbours the caller did not know (worth caching)
    new_offsets: dict[int, float] = field(default_factory=dict)
    # the slip-to-slip threshold this decision used: the calibrated one raised for the
    # index's size (Calibration.for_collection), for callers that list one-to-one matches
    pair_threshold: float | None = None

    @property
    def starts_cluster(self) -> bool:
        """True when the slip should found a new cluster with ``joined_slip_ids``."""
        return self.cluster_id is None and bool(self.joined_slip_ids)


def assign_incremental(
    vector: ArrayLike,
    *,
    index: VectorIndex,
    slip_cluster: Mapping[int, int],
    threshold: float | None = None,
    k: int = 10,
    cannot_link_clusters: Iterable[int] = frozenset(),
    slip_id: int | None = None,
    cluster_sizes: Mapping[int, int] | None = None,
    top_m: int = 3,
    temperature: float = DEFAULT_TEMPERATURE,
    calibration: Calibration | None = None,
    offsets: Mapping[int, float] | None = None,
    cluster_members: Mapping[int, Collection[int]] | None = None,
) -> Assignment:
    """Decide which cluster a new slip joins, from its neighbours in the index.

    Parameters
    ----------
    vector : (d,) array_like
        The new slip's embedding.
    index : VectorIndex
        Indexed slips (the new slip may already be in it; pass ``slip_id`` to skip itself).
    slip_cluster : mapping slip id -> cluster id
        Current clusters; absent or -1 = unclustered.
    threshold : float, optional
        One cosine threshold for every decision, with the fixed logistic confidence (0.5 at
        it); ignored when ``calibration`` is given.
    calibration : Calibration, optional
        The model's operating points: a slip joins a cluster when its slip-to-cluster
        evidence clears ``merge_threshold`` (the one batch clustering merges at), two
        unclustered slips found a cluster when their similarity clears ``pair_threshold``,
        and confidences come from its calibrated logistic.
    k : int
        Neighbours looked at.
    cannot_link_clusters : iterable of int
        Clusters this slip may not join (a human rejected the link).
    cluster_sizes : mapping cluster id -> member count, optional
        When given, members of a cluster missing from the k neighbours count at the k-th
        neighbour's similarity (see module notes); without it only members seen count.
    top_m : int
        Members averaged in the slip-to-cluster evidence.
    offsets : mapping slip id -> score offset, optional
        Known offsets of indexed slips, used when ``calibration.offset_ranks`` is set: the
        slip's own offset comes from its neighbours at those ranks (``Assignment.offset``),
        a neighbour's missing offset is computed from the index (``Assignment.new_offsets``).
    cluster_members : mapping cluster id -> slip ids, optional
        When given, a cluster whose top-m evidence clears the merge threshold must also clear
        it on the slip's average score to all its indexed members (up to
        :data:`MEMBERS_AVERAGED` of them), the quantity the merge threshold was calibrated on
        (batch average linkage), and that average is the evidence.  Without it the top-m
        evidence decides alone.

    Returns
    -------
    Assignment
    """
    cal = _calibration(threshold, calibration, temperature).for_collection(len(index))
    v = np.asarray(vector, dtype=np.float32).reshape(1, -1)
    extra = 1 if slip_id is not None else 0
    ranks = cal.offset_ranks
    wide = int(k) if ranks is None else max(int(k), int(ranks[1]))
    scores, ids = index.search(v, wide + extra)
    pairs = [
        (int(i), float(s))
        for i, s in zip(ids[0].tolist(), scores[0].tolist(), strict=True)
        if i >= 0 and i != slip_id
    ][:wide]
    own_offset, fresh = None, {}
    if ranks is not None:
        raw = np.array([[s for _, s in pairs]], dtype=np.float32).reshape(1, -1)
        own_offset = float(
            cal.shrink(score_offsets(raw, ranks, fill=cal.typical_offset), collection=len(index))[0]
        )
        known = offsets or {}
        fresh = indexed_offsets(
            index, [i for i, _ in pairs if i not in known], ranks, fill=cal.typical_offset
        )
        fresh = dict(
            zip(
                fresh, cal.shrink(list(fresh.values()), collection=len(index)).tolist(), strict=True
            )
        )
        pairs = sorted(
            (
                (i, s - 0.5 * (own_offset + float(known.get(i, fresh.get(i, 0.0)))))
                for i, s in pairs
            ),
            key=lambda p: -p[1],
        )
        complete = len(pairs) < wide
    else:
        complete = len(pairs) < int(k)  # the index holds no more slips: every member was seen
    pairs = pairs[: int(k)]
    if not pairs:
        return Assignment(None, 0.0, -1.0, [], [], own_offset, fresh, cal.pair_threshold)
    banned = set(cannot_link_clusters)
    kth = np.array([pairs[-1][1]], dtype=np.float32)
    labs = np.array([slip_cluster.get(i, -1) for i, _ in pairs], dtype=np.int64)
    sc = np.array([s for _, s in pairs], dtype=np.float32)
    ok = (labs >= 0) & ~np.isin(labs, list(banned))
    avail = None
    if cluster_sizes is not None and not complete:
        avail = np.array([cluster_sizes.get(int(c), 1) for c in labs[ok]], dtype=np.int64)
    g_rows, g_lab, ev = _group_evidence(
        np.zeros(int(ok.sum()), dtype=np.int64), labs[ok], sc[ok], kth, avail, top_m=int(top_m)
    )
    if cluster_members is not None and ev.size:
        unit = normalise_rows(v, name="vector")[0]
        known = ChainMap(fresh, offsets or {})  # the caller's cache is not copied
        for j in np.flatnonzero(ev >= cal.merge_threshold).tolist():
            members = [
                m for m in cluster_members.get(int(g_lab[j]), ()) if m != slip_id and m in index
            ]
            ev[j], measured = _average_evidence(unit, members, index, own_offset, known, cal)
            fresh.update(measured)
    best_cluster, best_ev = None, -1.0
    if ev.size:
        j = int(np.lexsort((g_lab, -ev))[0])
        best_cluster, best_ev = int(g_lab[j]), float(ev[j])
    if best_cluster is not None and best_ev >= cal.merge_threshold:
        return Assignment(
            best_cluster,
            float(cal.confidence(best_ev)),
            best_ev,
            pairs,
            [],
            own_offset,
            fresh,
            cal.pair_threshold,
        )
    # slip to slip: unclustered neighbours close enough one to one found a cluster together
    pair_at = cal.pair_threshold
    joined = [i for (i, s), c in zip(pairs, labs.tolist(), strict=True) if c < 0 and s >= pair_at]
    if joined:
        pair_ev = max(s for (i, s) in pairs if i in set(joined))
        return Assignment(
            None,
            float(cal.confidence(pair_ev)),
            pair_ev,
            pairs,
            joined,
            own_offset,
            fresh,
            cal.pair_threshold,
        )
    top = max(
        best_ev,
        max((s for (_, s), c in zip(pairs, labs.tolist(), strict=True) if c < 0), default=-1.0),
    )
    return Assignment(
        None, float(cal.confidence(top)), top, pairs, [], own_offset, fresh, cal.pair_threshold
    )


#: Members of a cluster a joining slip is averaged against (:func:`assign_incremental`);
#: a larger cluster is represented by an evenly spaced sample of its member ids, which keeps
#: a join's cost bounded (one batched search for their missing offsets).
MEMBERS_AVERAGED = 64


def _average_evidence(
    vector: NDArray[np.float32],
    members: Sequence[int],
    index: VectorIndex,
    own_offset: float | None,
    offsets: Mapping[int, float],
    cal: Calibration,
) -> tuple[float, dict[int, float]]:
    """The slip's average (adjusted) score to the cluster's members and the member offsets
    it had to measure.  Average linkage: ``mean cos - (b_slip + mean b_member) / 2``."""
    if not members:
        return -1.0, {}
    ids = sorted(members)
    if len(ids) > MEMBERS_AVERAGED:
        ids = [ids[i] for i in np.linspace(0, len(ids) - 1, MEMBERS_AVERAGED).astype(int)]
    mean_cos = float((index.reconstruct(ids) @ vector).mean())
    if own_offset is None or cal.offset_ranks is None:
        return mean_cos, {}
    missing = [i for i in ids if i not in offsets]
    measured: dict[int, float] = {}
    if missing:
        raw = indexed_offsets(index, missing, cal.offset_ranks, fill=cal.typical_offset)
        shrunk = cal.shrink(list(raw.values()), collection=len(index)).tolist()
        measured = dict(zip(raw, shrunk, strict=True))
    mean_offset = float(np.mean([offsets.get(i, measured.get(i, 0.0)) for i in ids]))
    return mean_cos - 0.5 * (own_offset + mean_offset), measured


def replay_arrivals(
    X: ArrayLike,
    calibration: Calibration,
    order: ArrayLike,
    *,
    k: int = 10,
    offsets_refresh: float | None = OFFSETS_REFRESH,
) -> NDArray[np.int64]:
    """Cluster labels (-1 = on its own) after assigning the rows of ``X`` one at a time in
    ``order``, from an empty index, with live assignment's decisions
    (:func:`assign_incremental`: join a cluster, found one with unclustered neighbours, or
    stay alone) and its offsets cache, dropped after the index grows by ``offsets_refresh``
    as the pipeline's assigner drops it (None: never)."""
    x = normalise_rows(X, name="X")
    index = VectorIndex(x.shape[1])
    slip_cluster: dict[int, int] = {}
    sizes: Counter[int] = Counter()
    members: defaultdict[int, list[int]] = defaultdict(list)
    offsets: dict[int, float] = {}
    offsets_at, fresh_id = 0, 0
    for i in np.asarray(order, dtype=np.int64).tolist():
        if offsets_refresh is not None and len(index) > offsets_refresh * max(offsets_at, 1):
            offsets, offsets_at = {}, len(index)
        a = assign_incremental(
            x[i],
            index=index,
            slip_cluster=slip_cluster,
            calibration=calibration,
            k=k,
            cluster_sizes=sizes,
            offsets=offsets,
            cluster_members=members,
        )
        offsets.update(a.new_offsets)
        if a.offset is not None:
            offsets[i] = a.offset
        if a.cluster_id is not None:
            joined, target = [i], a.cluster_id
        elif a.starts_cluster:
            joined, target = [i, *a.joined_slip_ids], fresh_id
            fresh_id += 1
        else:
            joined, target = [], -1
        for j in joined:
            slip_cluster[j] = target
            sizes[target] += 1
            members[target].append(j)
        index.add(np.array([i], dtype=np.int64), x[i : i + 1])
    return np.array([slip_cluster.get(i, -1) for i in range(len(x))], dtype=np.int64)


def replayed_pair_counts(
    X: ArrayLike,
    writers: ArrayLike,
    calibration: Calibration,
    *,
    orders: int = 3,
    usable: ArrayLike | None = None,
) -> tuple[int, int, int]:
    """(right, linked, true) slip pairs (:func:`cv.metrics.pair_counts`) pooled over ``orders``
    random arrival orders (seeds 0, 1, ...) of :func:`replay_arrivals`.  Only the ``usable``
    rows are replayed (the service never indexes a slip without usable handwriting); the rest
    stay on their own but count among their writers' true pairs."""
    from cv.metrics import pair_counts

    x = np.asarray(X, dtype=np.float32)
    keep = np.ones(len(x), dtype=bool) if usable is None else np.asarray(usable, dtype=bool)
    totals = [0, 0, 0]
    for seed in range(int(orders)):
        labels = np.full(len(x), -1, dtype=np.int64)
        if keep.sum() >= 2:
            order = np.random.default_rng(seed).permutation(int(keep.sum()))
            labels[keep] = replay_arrivals(x[keep], calibration, order)
        totals = [a + b for a, b in zip(totals, pair_counts(writers, labels), strict=True)]
    return totals[0], totals[1], totals[2]


def _calibration(
    threshold: float | None, calibration: Calibration | None, temperature: float
) -> Calibration:
    """The calibration given, else one threshold for every decision (the fixed logistic)."""
    if calibration is not None:
        return calibration
    if threshold is None:
        raise ValueError("give a threshold or a calibration")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    t = float(threshold)
    return Calibration(t, t, 1.0 / float(temperature), t, calibrated=False)


# -- stable ids -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClusterEvent:
    """A change to one stable cluster id between two clusterings.

    kind : ``created`` (new id; ``related`` lists the old clusters it took
    slips from, empty for a brand-new cluster), ``grown`` (kept its id and
    gained slips that were unclustered or new), ``shrunk`` (kept its id, lost slips to no
    cluster), ``merged`` (kept its id and absorbed ``related`` ids), ``split`` (kept its id,
    the ``related`` new ids took part of its slips), ``dissolved`` (id gone, its slips left on
    their own or removed), ``absorbed`` (id gone into ``related[0]``).
    """

    kind: str
    cluster_id: int
    related: tuple[int, ...] = ()
    slip_ids: tuple[int, ...] = ()


def stable_relabel(
    old: Mapping[int, int], new_labels: Mapping[int, int], *, next_id: int
) -> tuple[dict[int, int], list[ClusterEvent]]:
    """Carry stable cluster ids from an old clustering to a new batch clustering.

    Old and new clusters are matched greedily by overlap (number of shared slips, largest
    first; ties by lower old id, then lower new label).  A matched new cluster keeps the old
    id, so an unchanged partition keeps every id; in a merge the new cluster keeps the id of
    the old cluster contributing most slips; in a split the new part holding most of the old
    cluster's slips keeps the id.  Unmatched new clusters get fresh ids from ``next_id`` in
    order of their smallest slip id.

    Parameters
    ----------
    old : mapping slip id -> stable cluster id
        Previous assignment (-1 or absent = unclustered).
    new_labels : mapping slip id -> batch label
        New clustering of the current slips (-1 = on its own).  Slips absent here are gone.
    next_id : int
        First unused stable id.

    Returns
    -------
    mapping : dict slip id -> stable cluster id, for every slip of ``new_labels`` (-1 kept)
    events : list of ClusterEvent, ordered by cluster id then kind
    """
    old_members: dict[int, set[int]] = defaultdict(set)
    for s, c in old.items():
        if c is not None and c >= 0:
            old_members[int(c)].add(int(s))
    new_members: dict[int, set[int]] = defaultdict(set)
    for s, c in new_labels.items():
        if c is not None and c >= 0:
            new_members[int(c)].add(int(s))
    overlap: Counter[tuple[int, int]] = Counter()
    for lab, members in new_members.items():
        for s in members:
            c = old.get(s, -1)
            if c is not None and c >= 0:
                overlap[(int(c), lab)] += 1
    match_new: dict[int, int] = {}
    match_old: dict[int, int] = {}
    for (o, lab), _ in sorted(overlap.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1])):
        if o not in match_old and lab not in match_new:
            match_old[o], match_new[lab] = lab, o
    fresh = int(next_id)
    stable_of: dict[int, int] = {}
    for lab in sorted(new_members, key=lambda c: min(new_members[c])):
        if lab in match_new:
            stable_of[lab] = match_new[lab]
        else:
            stable_of[lab] = fresh
            fresh += 1
    mapping = {
        int(s): (stable_of[int(c)] if c is not None and c >= 0 else -1)
        for s, c in new_labels.items()
    }

    events: list[ClusterEvent] = []
    for lab, sid in stable_of.items():
        members = new_members[lab]
        sources = sorted({o for (o, lb) in overlap if lb == lab})
        if lab not in match_new:
            # related: the old clusters it took slips from (a split part when not empty)
            events.append(ClusterEvent("created", sid, tuple(sources), tuple(sorted(members))))
            continue
        prev = old_members[sid]
        absorbed = tuple(o for o in sources if o != sid and o not in match_old)
        if absorbed:
            events.append(ClusterEvent("merged", sid, absorbed, tuple(sorted(members - prev))))
        gained = {s for s in members - prev if old.get(s, -1) in (-1, None)}
        if gained:
            events.append(ClusterEvent("grown", sid, (), tuple(sorted(gained))))
        split_into = tuple(
            sorted(
                stable_of[lb]
                for (o, lb) in overlap
                if o == sid and lb != lab and stable_of[lb] != sid
            )
        )
        if split_into:
            events.append(ClusterEvent("split", sid, split_into))
        lost = {s for s in prev - members if mapping.get(s, -1) == -1}
        if lost:
            events.append(ClusterEvent("shrunk", sid, (), tuple(sorted(lost))))
    for o in sorted(old_members):
        if o in match_old:
            continue
        takers = Counter(stable_of[lb] for (oo, lb) in overlap.elements() if oo == o)
        if takers:
            main = min(takers, key=lambda c: (-takers[c], c))
            events.append(ClusterEvent("absorbed", o, (main,), tuple(sorted(old_members[o]))))
        else:
            events.append(ClusterEvent("dissolved", o, (), tuple(sorted(old_members[o]))))
    events.sort(key=lambda e: (e.cluster_id, e.kind))
    return mapping, events


# -- customers --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Attribution:
    """An anonymous slip attributed to a customer, with confidence 0..1."""

    slip_id: int
    customer_id: int
    confidence: float


@dataclass(frozen=True)
class ClusterCustomers:
    """Customers behind one cluster.

    customers : customer id -> number of the cluster's slips known to be theirs
    attributed : anonymous slips of the cluster attributed to its leading customer
    candidate_link : True when the cluster holds known slips of two or more customers
    confidence : mean membership confidence of the cluster's slips (1.0 when not supplied)
    """

    cluster_id: int
    slip_ids: tuple[int, ...]
    customers: dict[int, int]
    attributed: list[Attribution]
    candidate_link: bool
    confidence: float


def link_customers(
    slip_cluster: Mapping[int, int],
    slip_customer: Mapping[int, int | None],
    *,
    confidence: Mapping[int, float] | None = None,
) -> dict[int, ClusterCustomers]:
    """For each cluster: its customers, the anonymous slips attributed to them, link flags.

    An anonymous slip (customer None or absent) in a cluster with known slips is attributed
    to the customer owning most of them (ties: lowest customer id).  Its confidence is its
    membership confidence times that customer's share of the cluster's known slips, so a
    cluster split between two accounts attributes with at most 0.5.

    Parameters
    ----------
    slip_cluster : mapping slip id -> cluster id (-1 = none; such slips are skipped)
    slip_customer : mapping slip id -> customer id or None (anonymous)
    confidence : mapping slip id -> membership confidence 0..1, optional (default 1.0)

    Returns
    -------
    dict cluster id -> ClusterCustomers
    """
    members: dict[int, list[int]] = defaultdict(list)
    for s, c in slip_cluster.items():
        if c is not None and c >= 0:
            members[int(c)].append(int(s))
    out: dict[int, ClusterCustomers] = {}
    for cid in sorted(members):
        slips = sorted(members[cid])
        known = Counter(int(cu) for s in slips if (cu := slip_customer.get(s)) is not None)
        conf = {s: float(confidence.get(s, 0.0)) if confidence is not None else 1.0 for s in slips}
        attributed: list[Attribution] = []
        if known:
            lead = min(known, key=lambda cu: (-known[cu], cu))
            share = known[lead] / sum(known.values())
            for s in slips:
                if slip_customer.get(s) is None:
                    attributed.append(Attribution(s, lead, round(conf[s] * share, 6)))
        out[cid] = ClusterCustomers(
            cluster_id=cid,
            slip_ids=tuple(slips),
            customers=dict(sorted(known.items())),
            attributed=attributed,
            candidate_link=len(known) >= 2,
            confidence=float(np.mean([conf[s] for s in slips])),
        )
    return out
