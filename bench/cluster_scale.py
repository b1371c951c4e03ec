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
    PYTHONPATH=. .venv/bin/python bench/cluster_scale.py --labelled ../shared/data/unipen-dev
"""

from __future__ import annotations

import argparse
import json
import math
import os
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
    Calibration,
    assign_incremental,
    calibrate_threshold,
    calibration_of,
    cluster_calibrated,
    cluster_embeddings,
    indexed_offsets,
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
    n: int,
    *,
    dim: int,
    k: int,
    threshold: float,
    seed: int,
    kind: str,
    hnsw_m: int,
    queries: int,
) -> dict[str, object]:
    """Cluster n synthetic slips and time each stage; optionally time incremental assignment."""
    t0 = time.perf_counter()
    X, writers, params = synthetic_embeddings(n, dim=dim, seed=seed)
    gen_s = time.perf_counter() - t0

    t0, c0 = time.perf_counter(), time.process_time()
    # one index serves the batch kNN graph and then the timed incremental assignments
    index = VectorIndex(dim, kind=kind, nprobe=8, hnsw_m=hnsw_m, ef_search=max(64, 2 * k))
    index.add(np.arange(n, dtype=np.int64), X)
    build_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    nbr, sim = knn_graph(X, k=k, index=index)
    knn_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    labels = cluster_embeddings(X, threshold=threshold, k=k, neighbours=(nbr, sim))
    cluster_s = time.perf_counter() - t0
    # CPU seconds of all threads: wall time on a shared machine depends on other jobs
    cpu_s = time.process_time() - c0

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
        "index": "exact" if index.is_exact else kind,
        "generate_s": round(gen_s, 2),
        "build_s": round(build_s, 2),
        "knn_s": round(knn_s, 2),
        "cluster_s": round(cluster_s, 2),
        "total_s": round(build_s + knn_s + cluster_s, 2),
        "total_cpu_s": round(cpu_s, 2),
        "load_avg_1m": round(os.getloadavg()[0], 1),
        "ann_recall_at_k": round(ann_recall, 4),
        # share of graph neighbours by the same writer (ties make recall@k look worse)
        "neighbours_same_writer": round(float(np.mean(writers[nbr] == writers[:, None])), 4),
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
        # raw cosine (what the pipeline assigns with), and on normalised scores: the slip's
        # own offset from its 15 nearest, each neighbour's from the cache or, on a miss,
        # from the index.  "cold": nothing cached (the first assignments after a worker
        # starts); "warm": every neighbour's offset cached, filled here untimed
        raw = Calibration.uncalibrated(threshold)
        norm = Calibration(threshold, threshold, 20.0, threshold, offset_ranks=(5, 15))
        near = np.unique(index.search(Q, 15)[1])
        warm = indexed_offsets(index, near[near >= 0].tolist())
        variants: tuple[tuple[str, Calibration, dict[int, float] | None], ...] = (
            ("assign", raw, None),
            ("assign_norm_cold", norm, None),
            ("assign_norm_warm", norm, warm),
        )
        out["assign_queries"] = queries
        for name, calibration, cache in variants:
            lat = []
            for q in Q:
                t = time.perf_counter()
                assign_incremental(
                    q,
                    index=index,
                    slip_cluster=slip_cluster,
                    calibration=calibration,
                    k=k,
                    cluster_sizes=cluster_sizes,
                    offsets=cache,
                )
                lat.append((time.perf_counter() - t) * 1000)
            out[f"{name}_p50_ms"] = round(float(np.percentile(lat, 50)), 3)
            out[f"{name}_p99_ms"] = round(float(np.percentile(lat, 99)), 3)
    out["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    return out


def labelled_eval(folder: Path, *, jobs: int, k: int, seed: int) -> dict[str, object]:
    """Figures on a labelled image folder (labels.csv image,writer), split by writer.

    An :class:`cv.embed.EmbeddingModel` is fitted on half the writers (SHA-256 parity of the
    writer name, shifted by ``seed``) and the other half is embedded, calibrated and
    clustered: the operating point at pairwise precision >= 0.98 and the recall there, plus
    the scores at the model's own pair threshold, at the merge threshold its fit calibrated,
    and at the best-F1 threshold (an oracle).
    """
    import csv
    import hashlib

    from cv.embed import EmbeddingModel, extract_files
    from cv.metrics import precision_threshold

    with (folder / "labels.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    paths = [
        folder / r["image"] if (folder / r["image"]).is_file() else folder / "images" / r["image"]
        for r in rows
    ]
    writers = np.array([r["writer"] for r in rows])
    fold = np.array(
        [(int(hashlib.sha256(w.encode()).hexdigest(), 16) + seed) % 2 for w in writers.tolist()]
    )
    model = EmbeddingModel(random_state=seed)
    t0 = time.perf_counter()
    raws, errors = extract_files(paths, model=model, jobs=jobs)
    extract_s = time.perf_counter() - t0
    ok = np.array([e is None for e in errors])
    fit = ok & (fold == 0)
    held = ok & (fold == 1)
    usable = [r for r in raws if r is not None]
    pos = np.cumsum(ok) - 1  # index of each readable file in `usable`
    model.fit_raw([usable[i] for i in pos[fit]], writers[fit].tolist())
    X = model.transform_raw([usable[i] for i in pos[held]])
    w = writers[held]
    kk = min(k, len(w) - 1)
    calibration = calibration_of(model)
    calibration = calibration.batch or calibration  # batch clustering's operating point
    ranks = calibration.offset_ranks
    wide = knn_graph(X, k=kk if ranks is None else min(max(kk, ranks[1]), len(w) - 1))
    offsets = calibration.offsets(wide[1], collection=len(X))
    nb = (wide[0][:, :kk], wide[1][:, :kk])
    # on the scores the model's calibration uses (normalised by per-slip offsets, if so)
    cal = calibrate_threshold(X, w, target_precision=0.98, neighbours=nb, offsets=offsets)
    cal.pop("curve")
    sim = X @ X.T
    iu = np.triu_indices(len(w), k=1)
    pair_op = precision_threshold(sim[iu], w[iu[0]] == w[iu[1]], target_precision=0.98)
    norm_op = pair_op
    if offsets is not None:
        adjusted = sim[iu] - 0.5 * (offsets[iu[0]] + offsets[iu[1]])
        norm_op = precision_threshold(adjusted, w[iu[0]] == w[iu[1]], target_precision=0.98)
    at_model = clustering_scores(
        w, cluster_embeddings(X, threshold=float(model.threshold_), k=kk, neighbours=nb)
    )
    # the merge threshold the fit measured on its own held-out folds (cv.embed): what the
    # pipeline and `sliplink cluster` use, judged here on writers the fit never saw
    merge_t = calibration.merge_threshold
    at_merge = clustering_scores(w, cluster_calibrated(X, calibration, k=kk)[0])
    best_t = float(cal["best_f1_threshold"])  # type: ignore[arg-type]
    at_best = clustering_scores(
        w, cluster_embeddings(X, threshold=best_t, neighbours=nb, offsets=offsets)
    )
    counts = np.unique(w, return_counts=True)[1]
    return {
        "folder": str(folder),
        "fit_writers": int(len(set(writers[fit].tolist()))),
        "heldout_writers": int(len(set(w.tolist()))),
        "heldout_slips": int(len(w)),
        "slips_per_writer": [int(counts.min()), float(round(counts.mean(), 2)), int(counts.max())],
        "unreadable": int((~ok).sum()),
        "extract_s": round(extract_s, 1),
        "pair_threshold_p98": pair_op["threshold"],
        "pair_recall_p98": round(pair_op["recall"], 4),
        "offset_ranks": None if ranks is None else list(ranks),
        "normalised_pair_threshold_p98": norm_op["threshold"],
        "normalised_pair_recall_p98": round(norm_op["recall"], 4),
        "calibrated": {key: (round(v, 4) if isinstance(v, float) else v) for key, v in cal.items()},
        "at_model_threshold": {"threshold": float(model.threshold_)}
        | {key: round(v, 4) for key, v in at_model.items()},
        "at_model_merge_threshold": {"threshold": float(merge_t)}
        | {key: round(v, 4) for key, v in at_merge.items()},
        "at_best_f1_threshold_oracle": {"threshold": cal["best_f1_threshold"]}
        | {key: round(v, 4) for key, v in at_best.items()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-n", type=float, default=1e6, help="largest size (default 1e6)")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--index", choices=["ivf", "hnsw"], default="ivf", help="approximate index")
    ap.add_argument("--hnsw-m", type=int, default=16)
    ap.add_argument("--queries", type=int, default=2000, help="incremental assignments timed")
    ap.add_argument("--threshold", type=float, default=None, help="skip calibration")
    ap.add_argument("--single", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument(
        "--labelled",
        type=Path,
        action="append",
        default=None,
        help="instead: figures on a labelled image folder (repeatable), split by writer",
    )
    ap.add_argument("--jobs", type=int, default=2, help="processes for feature extraction")
    args = ap.parse_args(argv)

    if args.labelled:
        for folder in args.labelled:
            res = labelled_eval(folder, jobs=args.jobs, k=args.k, seed=args.seed)
            print(json.dumps(res), flush=True)
        return 0

    if args.single is not None:
        res = run_one(
            args.single,
            dim=args.dim,
            k=args.k,
            threshold=args.threshold,
            seed=args.seed,
            kind=args.index,
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
        cmd += ["--hnsw-m", str(args.hnsw_m), "--index", args.index]
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
