"""Scale benchmark for writer clustering on synthetic embeddings shaped like real ones.

Synthetic slips: writers belong to style families (different writers of one family are
somewhat alike), each writer has its own spread (sloppy writers are far less consistent),
slips per writer are skewed (discrete Pareto: many one-off writers, a few regulars with
hundreds of slips), and every slip carries one of a few shared printed-form directions,
the signal CV-NOTES says drowns the hand.  With the defaults, same-writer cosine similarity
spans about 0.4-0.85 and different-writer about -0.1-0.45, overlapping.

The threshold is calibrated first on a separate labelled draw (other writers, other seed)
at pairwise precision >= 0.98, then every size is clustered with it.  Each size runs in its
own process so its peak RSS (``resource.getrusage``) is its own.  Prints one JSON line per
size, then one line on how time grows per 10x.

    PYTHONPATH=. .venv/bin/python bench/cluster_scale.py --max-n 1000000
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from cv.cluster import (  # noqa: E402
    assign_incremental,
    calibrate_threshold,
    cluster_embeddings,
    knn_graph,
)
from cv.index import VectorIndex  # noqa: E402
from cv.metrics import clustering_scores  # noqa: E402


def synthetic_embeddings(
    n: int,
    *,
    dim: int = 128,
    seed: int = 0,
    zipf_a: float = 2.0,
    max_per_writer: int = 300,
    n_forms: int = 4,
    form_weight: float = 0.5,
    family_share: float = 0.35,
    writers_per_family: int = 20,
    chunk: int = 100_000,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(n, dim) float32 unit rows, (n,) int64 writer ids, and the generator's parameters.

    The parameters (writer centres, spreads, forms) let :func:`more_slips` draw further slips
    of the same writers.
    """
    rng = np.random.default_rng(seed)
    counts: list[int] = []
    total = 0
    while total < n:
        c = int(min(rng.zipf(zipf_a), max_per_writer, n - total))
        counts.append(c)
        total += c
    n_writers = len(counts)
    writers = np.repeat(np.arange(n_writers, dtype=np.int64), counts)
    writers = writers[rng.permutation(n)]
    n_fam = max(1, n_writers // writers_per_family)
    fam = rng.standard_normal((n_fam, dim)).astype(np.float32)
    fam /= np.linalg.norm(fam, axis=1, keepdims=True)
    own = rng.standard_normal((n_writers, dim)).astype(np.float32)
    own /= np.linalg.norm(own, axis=1, keepdims=True)
    fam_of = rng.integers(0, n_fam, n_writers)
    centres = math.sqrt(family_share) * fam[fam_of] + math.sqrt(1 - family_share) * own
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    # per-writer noise variance: lognormal around 0.35, so consistency varies by writer
    spread = np.clip(rng.lognormal(math.log(0.35), 0.35, n_writers), 0.1, 1.2).astype(np.float32)
    forms = rng.standard_normal((n_forms, dim)).astype(np.float32)
    forms /= np.linalg.norm(forms, axis=1, keepdims=True)
    params = {"centres": centres, "spread": spread, "forms": forms * form_weight}
    X = _draw(writers, params, rng=rng, chunk=chunk)
    return X, writers, params


def _draw(
    writers: np.ndarray, params: dict[str, np.ndarray], *, rng: np.random.Generator, chunk: int
) -> np.ndarray:
    centres, spread, forms = params["centres"], params["spread"], params["forms"]
    n, dim = writers.size, centres.shape[1]
    X = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        w = writers[start : start + chunk]
        noise = rng.standard_normal((w.size, dim), dtype=np.float32)
        noise *= np.sqrt(spread[w] / dim)[:, None]
        x = centres[w] + forms[rng.integers(0, forms.shape[0], w.size)] + noise
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        X[start : start + w.size] = x
    return X


def more_slips(writers: np.ndarray, params: dict[str, np.ndarray], *, seed: int) -> np.ndarray:
    """(m, dim) float32 fresh slips by the given writers."""
    return _draw(writers, params, rng=np.random.default_rng(seed), chunk=100_000)


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def calibrate(*, dim: int, k: int, seed: int, n: int = 20_000) -> dict[str, object]:
    """Threshold at pairwise precision >= 0.98 on a held-out draw (other writers, other seed)."""
    X, w, _ = synthetic_embeddings(n, dim=dim, seed=seed + 1000)
    grid = np.round(np.arange(0.30, 0.90, 0.02), 4)
    res = calibrate_threshold(X, w, target_precision=0.98, k=k, thresholds=grid)
    res.pop("curve")
    return res


def run_one(
    n: int, *, dim: int, k: int, threshold: float, seed: int, hnsw_m: int, queries: int
) -> dict[str, object]:
    """Cluster n synthetic slips and time each stage; optionally time incremental assignment."""
    t0 = time.perf_counter()
    X, writers, params = synthetic_embeddings(n, dim=dim, seed=seed)
    gen_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    index = VectorIndex(dim, hnsw_m=hnsw_m, ef_search=max(64, 2 * k))
    index.add(np.arange(n, dtype=np.int64), X)
    build_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    nbr, sim = knn_graph(X, k=k, index=index)
    knn_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    labels = cluster_embeddings(X, threshold=threshold, k=k, neighbours=(nbr, sim))
    cluster_s = time.perf_counter() - t0

    # recall of the ANN graph against exact search on a sample of rows (chunked: no n x n)
    rng = np.random.default_rng(seed)
    sample = rng.choice(n, size=min(200, n), replace=False)
    best_s = np.full((sample.size, k), -np.inf, dtype=np.float32)
    best_i = np.full((sample.size, k), -1, dtype=np.int64)
    for start in range(0, n, 50_000):
        s = X[sample] @ X[start : start + 50_000].T
        s[sample[:, None] == np.arange(start, start + s.shape[1])[None, :]] = -np.inf
        cat_s = np.concatenate([best_s, s], axis=1)
        cat_i = np.concatenate(
            [best_i, np.arange(start, start + s.shape[1])[None, :].repeat(sample.size, axis=0)],
            axis=1,
        )
        top = np.argpartition(-cat_s, k - 1, axis=1)[:, :k]
        best_s = np.take_along_axis(cat_s, top, axis=1)
        best_i = np.take_along_axis(cat_i, top, axis=1)
    ann_recall = float(
        np.mean([len(set(best_i[i]) & set(nbr[s])) / k for i, s in enumerate(sample.tolist())])
    )

    scores = clustering_scores(writers, labels)
    out: dict[str, object] = {
        "n": n,
        "dim": dim,
        "k": k,
        "threshold": threshold,
        "writers": int(writers.max()) + 1,
        "index_exact": index.is_exact,
        "generate_s": round(gen_s, 2),
        "build_s": round(build_s, 2),
        "knn_s": round(knn_s, 2),
        "cluster_s": round(cluster_s, 2),
        "total_s": round(build_s + knn_s + cluster_s, 2),
        "ann_recall_at_k": round(ann_recall, 4),
        "clusters": int(labels.max()) + 1,
        "unclustered": int((labels < 0).sum()),
        **{key: round(v, 4) for key, v in scores.items()},
    }
    if queries:
        slip_cluster = dict(enumerate(labels.tolist()))
        sizes = np.bincount(labels[labels >= 0])
        cluster_sizes = dict(enumerate(sizes.tolist()))
        q_writers = writers[rng.choice(n, size=queries)]
        Q = more_slips(q_writers, params, seed=seed + 7)
        lat = []
        for q in Q:
            t = time.perf_counter()
            assign_incremental(
                q,
                index=index,
                slip_cluster=slip_cluster,
                threshold=threshold,
                k=k,
                cluster_sizes=cluster_sizes,
            )
            lat.append((time.perf_counter() - t) * 1000)
        out["assign_queries"] = queries
        out["assign_p50_ms"] = round(float(np.percentile(lat, 50)), 3)
        out["assign_p99_ms"] = round(float(np.percentile(lat, 99)), 3)
    out["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-n", type=float, default=1e6, help="largest size (default 1e6)")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--queries", type=int, default=2000, help="incremental assignments timed")
    ap.add_argument("--threshold", type=float, default=None, help="skip calibration")
    ap.add_argument("--single", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.single is not None:
        res = run_one(
            args.single,
            dim=args.dim,
            k=args.k,
            threshold=args.threshold,
            seed=args.seed,
            hnsw_m=args.hnsw_m,
            queries=args.queries,
        )
        print(json.dumps(res), flush=True)
        return 0

    threshold = args.threshold
    if threshold is None:
        t0 = time.perf_counter()
        cal = calibrate(dim=args.dim, k=args.k, seed=args.seed)
        cal["calibrate_s"] = round(time.perf_counter() - t0, 2)
        print(json.dumps({"calibration": cal}), flush=True)
        threshold = cal["threshold"]
        if threshold is None:
            print("calibration reached no threshold at precision 0.98", file=sys.stderr)
            return 1
    sizes = [10**e for e in range(4, 7) if 10**e <= args.max_n] or [int(args.max_n)]
    results = []
    for n in sizes:
        cmd = [sys.executable, __file__, "--single", str(n), "--threshold", str(threshold)]
        cmd += ["--dim", str(args.dim), "--k", str(args.k), "--seed", str(args.seed)]
        cmd += ["--hnsw-m", str(args.hnsw_m)]
        cmd += ["--queries", str(args.queries if n == sizes[-1] else 0)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        line = proc.stdout.strip().splitlines()[-1]
        print(line, flush=True)
        results.append(json.loads(line))
    growth = {}
    for a, b in zip(results, results[1:], strict=False):
        ratio = b["total_s"] / max(a["total_s"], 1e-9)
        growth[f"{a['n']}->{b['n']}"] = {
            "time_ratio": round(ratio, 2),
            "exponent": round(math.log(ratio) / math.log(b["n"] / a["n"]), 2),
        }
    print(json.dumps({"growth": growth}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
