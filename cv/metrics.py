"""Evaluation metrics for writer retrieval and clustering.

Retrieval is leave-one-out: every item queries all others.  Clustering metrics compare
predicted labels with true writer labels; a predicted label of -1 means "left on its own"
and is treated as a singleton cluster.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from numpy.typing import ArrayLike, NDArray


def _as_labels(labels: ArrayLike, *, name: str) -> NDArray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def retrieval_scores(
    similarity: NDArray[np.floating], writers: ArrayLike, *, queries: ArrayLike | None = None
) -> dict[str, float]:
    """Leave-one-out retrieval metrics from a square similarity matrix.

    Parameters
    ----------
    similarity : (n, n) float array
        Higher = more similar.  The diagonal is ignored.
    writers : (n,) array
        True writer of each item.
    queries : (n,) bool array, optional
        Score only these items as queries (each still searches all n), e.g. one kind of
        crop; default all.

    Returns
    -------
    dict with ``map`` (mean average precision), ``top1`` and ``top5`` (fraction of queries
    whose top-k neighbours hold a same-writer item).  Queries without any other item by the
    same writer are skipped, as is usual in writer retrieval.
    """
    sim = np.asarray(similarity, dtype=np.float64)
    labels = _as_labels(writers, name="writers")
    n = labels.shape[0]
    if sim.shape != (n, n):
        raise ValueError(f"similarity must be ({n}, {n}), got {sim.shape}")
    asked = np.ones(n, bool) if queries is None else np.asarray(queries, bool)
    if asked.shape != (n,):
        raise ValueError(f"queries must be ({n},) booleans, got {asked.shape}")
    aps, top1, top5 = [], [], []
    for q in np.flatnonzero(asked):
        order = np.argsort(-sim[q], kind="stable")
        order = order[order != q]
        relevant = labels[order] == labels[q]
        if not relevant.any():
            continue
        hits = np.cumsum(relevant)
        ranks = np.flatnonzero(relevant) + 1
        aps.append(float(np.mean(hits[relevant] / ranks)))
        top1.append(bool(relevant[0]))
        top5.append(bool(relevant[:5].any()))
    if not aps:
        return {"map": float("nan"), "top1": float("nan"), "top5": float("nan"), "queries": 0}
    return {
        "map": float(np.mean(aps)),
        "top1": float(np.mean(top1)),
        "top5": float(np.mean(top5)),
        "queries": len(aps),
    }


def retrieval_by_kind(
    similarity: NDArray[np.floating], writers: ArrayLike, kinds: ArrayLike
) -> dict[str, dict[str, float]]:
    """:func:`retrieval_scores` of each kind's queries (e.g. UNIPEN's ``chars`` and
    ``words``), each query still searching every item."""
    k = np.asarray(kinds)
    return {
        str(kind): retrieval_scores(similarity, writers, queries=k == kind) for kind in np.unique(k)
    }


def top1_attribute_rate(similarity: NDArray[np.floating], attribute: ArrayLike) -> dict[str, float]:
    """How often the top-1 neighbour shares ``attribute`` (e.g. the printed template), and chance.

    Chance is the probability that a random other item shares the query's attribute,
    averaged over queries.
    """
    sim = np.asarray(similarity, dtype=np.float64).copy()
    attr = _as_labels(attribute, name="attribute")
    n = attr.shape[0]
    if n < 2:
        return {"rate": float("nan"), "chance": float("nan")}
    np.fill_diagonal(sim, -np.inf)
    nearest = np.argmax(sim, axis=1)
    rate = float(np.mean(attr[nearest] == attr))
    counts = Counter(attr.tolist())
    chance = float(np.mean([(counts[a] - 1) / (n - 1) for a in attr.tolist()]))
    return {"rate": rate, "chance": chance}


def _singletons_for_noise(pred: NDArray) -> NDArray:
    """Give every -1 its own label so unclustered items count as singletons."""
    out = pred.astype(object).copy()
    for i in np.flatnonzero(pred == -1):
        out[i] = ("__single__", int(i))
    _, codes = np.unique(np.array([str(v) for v in out]), return_inverse=True)
    return codes


def pair_counts(true: ArrayLike, pred: ArrayLike) -> tuple[int, int, int]:
    """(right, linked, true) unordered item pairs: pairs sharing a predicted cluster and a
    writer, pairs sharing a predicted cluster, pairs sharing a writer.  Unclustered items
    (-1) are singletons.  O(n) via the contingency table, never an n×n matrix."""
    t = _as_labels(true, name="true")
    p = _singletons_for_noise(_as_labels(pred, name="pred"))
    if t.shape != p.shape:
        raise ValueError(f"true and pred differ in length: {t.shape} vs {p.shape}")
    pairs = Counter(zip(t.tolist(), p.tolist(), strict=True))
    right = sum(c * (c - 1) // 2 for c in pairs.values())
    linked = sum(c * (c - 1) // 2 for c in Counter(p.tolist()).values())
    true_pairs = sum(c * (c - 1) // 2 for c in Counter(t.tolist()).values())
    return int(right), int(linked), int(true_pairs)


def pairwise_scores(true: ArrayLike, pred: ArrayLike) -> dict[str, float]:
    """Pairwise precision / recall / F1 over all unordered item pairs, computed from counts
    (:func:`pair_counts`): a pair is positive when both items share a predicted cluster and
    correct when they share a writer."""
    tp, pred_pairs, true_pairs = pair_counts(true, pred)
    precision = tp / pred_pairs if pred_pairs else 1.0
    recall = tp / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def bcubed_scores(true: ArrayLike, pred: ArrayLike) -> dict[str, float]:
    """B-cubed precision / recall / F1 (Bagga & Baldwin 1998), averaged over items."""
    t = _as_labels(true, name="true")
    p = _singletons_for_noise(_as_labels(pred, name="pred"))
    joint = Counter(zip(t.tolist(), p.tolist(), strict=True))
    true_size = Counter(t.tolist())
    pred_size = Counter(p.tolist())
    items = list(zip(t.tolist(), p.tolist(), strict=True))
    precision = np.mean([joint[(a, b)] / pred_size[b] for a, b in items])
    recall = np.mean([joint[(a, b)] / true_size[a] for a, b in items])
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def adjusted_rand_index(true: ArrayLike, pred: ArrayLike) -> float:
    """ARI with -1 predictions counted as singletons."""
    from sklearn.metrics import adjusted_rand_score

    t = _as_labels(true, name="true")
    p = _singletons_for_noise(_as_labels(pred, name="pred"))
    return float(adjusted_rand_score(t, p))


def clustering_scores(true: ArrayLike, pred: ArrayLike) -> dict[str, float]:
    """All clustering figures in one dict: ARI, pairwise P/R/F1, B-cubed P/R/F1."""
    pw = pairwise_scores(true, pred)
    bc = bcubed_scores(true, pred)
    return {
        "ari": adjusted_rand_index(true, pred),
        "pairwise_precision": pw["precision"],
        "pairwise_recall": pw["recall"],
        "pairwise_f1": pw["f1"],
        "bcubed_precision": bc["precision"],
        "bcubed_recall": bc["recall"],
        "bcubed_f1": bc["f1"],
    }


def precision_threshold(
    scores: NDArray[np.floating], same: NDArray[np.bool_], *, target_precision: float = 0.98
) -> dict[str, float]:
    """Lowest score threshold whose pairs at or above it reach ``target_precision``.

    Parameters
    ----------
    scores : (m,) float array of pair similarities.
    same : (m,) bool array, True where the pair shares a writer.

    Returns ``threshold`` (inf when no threshold reaches the target), the precision and
    recall there.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(same, dtype=bool)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError("scores and same must be one-dimensional and of equal length")
    total_pos = int(y.sum())
    order = np.argsort(-s, kind="stable")
    tp = np.cumsum(y[order])
    k = np.arange(1, len(s) + 1)
    prec = tp / k
    ok = np.flatnonzero(prec >= target_precision)
    if len(ok) == 0 or total_pos == 0:
        return {"threshold": float("inf"), "precision": float("nan"), "recall": 0.0}
    # take the deepest cut still at target precision, ending on a distinct score
    i = int(ok[-1])
    return {
        "threshold": float(s[order][i]),
        "precision": float(prec[i]),
        "recall": float(tp[i] / total_pos),
    }
