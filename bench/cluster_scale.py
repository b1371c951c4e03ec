"""Scale benchmark for writer clustering on synthetic embeddings shaped like real ones.

Synthetic slips: writers belong to style families (different writers of one family are
somewhat alike), each writer has its own spread (sloppy writers are far less consistent),
slips per writer are skewed (discrete Pareto: many one-off writers, a few regulars with
hundreds of slips), and every slip carries one of a few shared printed-form directions,
the signal CV-NOTES says drowns the hand.  With the defaults, same-writer cosine similarity
spans about 0.4-0.85 and different-writer about -0.1-0.45, overlapping.

Production's path: a model calibration is measured first on a separate labelled draw (other
writers, other seed; two folds by writer) by the rule a model fit uses
(``cv.embed._operating_points``): raw cosine operating points, the ``live`` ones incremental
assignment uses (normalised scores of plain vectors; timed with an offsets cache that starts
cold: p50 / p99 1.0 / 2.0, 1.8 / 3.0, 3.3 / 5.6 ms at 10^4 / 10^5 / 10^6, session 14) and,
as ``batch``, the re-cluster's on vectors augmented with their 3 nearest at weight 0.3 and
normalised scores.  Every size is then re-clustered as the workers' scheduled re-cluster does
(``cv.cluster.cluster_calibrated``) and, with ``--queries``, incremental assignment is timed
against the index the workers keep (``VectorIndex(dim)``: HNSW).  ``--plain`` re-clusters
without the augmentation (its batch threshold calibrated on plain vectors), for comparison.
Each size runs in its own process so its peak RSS (``VmHWM``) is its own; CPU
seconds are given beside wall seconds (the machine is shared).  Prints the calibration, one
JSON line per size, then how re-cluster time and memory grow per 10x.

2026-12-06, 2 cores, nice 10, load average 4-10 from other jobs; 10^4 / 10^5 / 10^6 slips:
re-cluster 2.5 / 24.5 / 497 s wall, 1.9 / 18.3 / 399 s CPU, peak RSS 0.18 / 0.58 / 3.26 GB.
Time grows ~n^1.0, then ~n^1.34 from 10^5 to 10^6: at 10^6 (load 2) the IVF kNN graph takes
219 s wall / 421 s CPU of 269 / 473 (each query scans ~4 sqrt(n) centroids and 8 of their
lists, so ~sqrt(n) rows), the augmentation 13 / 13 s, the agglomeration 36 / 38 s (where the
peak is). Incremental assignment p50 / p99 0.76 / 5.2, 0.87 / 5.7, 1.29 / 6.5 ms (the HNSW
build at 10^6, a worker's cold start: 695 s wall, 446 s CPU; recall@10 0.73). ``--plain`` at
10^6: 493 s wall, 557 s CPU (more merges), 3.27 GB. Pairwise P / R / F1 / ARI at 10^6: 0.987
/ 0.011 / 0.021 / 0.021 augmented (merge 0.37), 0.913 / 0.276 / 0.424 / 0.424 plain (merge
-0.04); raw cosine at its own operating point (``--calibration`` with ``"batch": null``) F1
0.993 at 10^4, 0.974 at 10^5. On these slips, where regular writers have hundreds of slips,
the normalised batch scores, and the augmented ones far more, link little.

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


def synthetic_accounts(writers: np.ndarray, *, share: float, seed: int) -> np.ndarray | None:
    """Each slip's customer account: its writer's id for a ``share`` of the slips, -1 (anonymous)
    for the rest; None when ``share`` is 0 (every slip anonymous)."""
    if share <= 0:
        return None
    known = np.random.default_rng([seed, 17]).random(writers.size) < share
    return np.where(known, writers, -1).astype(np.int64)


def more_slips(writers: np.ndarray, params: dict[str, np.ndarray], *, seed: int) -> np.ndarray:
    """(m, dim) float32 fresh slips by the given writers."""
    return _draw(writers, params, rng=np.random.default_rng(seed), chunk=100_000)


def _peak_rss_mb() -> float:
    # VmHWM (KiB): Linux's ru_maxrss survives exec, so a child's would count the parent's
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def calibrate(
    *, dim: int, seed: int, n: int = 20_000, plain: bool = False, account_share: float = 0.0
) -> Calibration:
    """The model calibration production would carry, measured on a held-out draw (other
    writers, other seed) split into two folds by writer as a model fit splits its writers:
    raw cosine operating points for incremental assignment and, as ``batch``, the re-cluster's
    on augmented vectors and normalised scores (``cv.embed._operating_points``).
    ``plain``: the batch operating points on plain vectors, the rule before the augmentation.
    ``account_share``: that share of the slips carries its writer's customer account, and the
    batch offsets leave a slip's own account out (``cv.cluster.same_account``)."""
    from dataclasses import replace

    from cv.cluster import DEFAULT_OFFSET_PRIOR, DEFAULT_OFFSET_RANKS, calibrate_clustering
    from cv.embed import _operating_points

    X, w, _ = synthetic_embeddings(n, dim=dim, seed=seed + 1000)
    rows = [np.flatnonzero(w % 2 == f) for f in (0, 1)]
    folds = [(X[r], w[r]) for r in rows]
    accounts = synthetic_accounts(w, share=account_share, seed=seed + 1000)
    _, calibration = _operating_points(
        [(x, wf, r) for (x, wf), r in zip(folds, rows, strict=True)], accounts=accounts
    )
    if calibration is None:
        raise ValueError("the calibration draw has no usable fold")
    if plain:
        batch = calibrate_clustering(
            folds,
            target_precision=0.98,
            offset_ranks=DEFAULT_OFFSET_RANKS,
            offset_prior=DEFAULT_OFFSET_PRIOR,
        )
        calibration = replace(calibration, batch=batch)
    return calibration


def run_one(
    n: int,
    *,
    dim: int,
    k: int,
    calibration: Calibration,
    seed: int,
    kind: str,
    queries: int,
    account_share: float = 0.0,
) -> dict[str, object]:
    """Re-cluster n synthetic slips as the workers do (:func:`cluster_calibrated`) and time
    it; then time incremental assignment against an index of the n slips."""
    t0 = time.perf_counter()
    X, writers, params = synthetic_embeddings(n, dim=dim, seed=seed)
    gen_s = time.perf_counter() - t0
    rss_before = _peak_rss_mb()

    t0, c0 = time.perf_counter(), time.process_time()
    accounts = synthetic_accounts(writers, share=account_share, seed=seed)
    labels, _ = cluster_calibrated(X, calibration, k=k, accounts=accounts)
    recluster_s = time.perf_counter() - t0
    # CPU seconds of all threads: wall time on a shared machine depends on other jobs
    recluster_cpu_s = time.process_time() - c0
    recluster_rss = _peak_rss_mb()  # before the assignment index below adds its own

    batch = calibration.batch or calibration
    scores = clustering_scores(writers, labels)
    out: dict[str, object] = {
        "n": n,
        "dim": dim,
        "k": k,
        "merge_threshold": batch.merge_threshold,
        # as raised for the collection's size (cv.cluster.Calibration.for_collection)
        "merge_threshold_applied": round(batch.for_collection(n).merge_threshold, 4),
        "augment": None if batch.augment is None else list(batch.augment),
        "account_share": account_share,
        "writers": int(writers.max()) + 1,
        "generate_s": round(gen_s, 2),
        "recluster_s": round(recluster_s, 2),
        "recluster_cpu_s": round(recluster_cpu_s, 2),
        "load_avg_1m": round(os.getloadavg()[0], 1),
        "peak_rss_before_mb": round(rss_before, 1),
        "recluster_peak_rss_mb": round(recluster_rss, 1),
        "clusters": int(labels.max()) + 1,
        "unclustered": int((labels < 0).sum()),
        **{key: round(v, 4) for key, v in scores.items()},
    }
    if queries:
        # the workers' live index (workers.pipeline: VectorIndex(dim)) unless --index ivf
        t0, c0 = time.perf_counter(), time.process_time()
        index = VectorIndex(dim) if kind == "hnsw" else VectorIndex(dim, kind="ivf", nprobe=8)
        index.add(np.arange(n, dtype=np.int64), X)
        out["index"] = "exact" if index.is_exact else kind
        out["index_build_s"] = round(time.perf_counter() - t0, 2)
        out["index_build_cpu_s"] = round(time.process_time() - c0, 2)
        rng = np.random.default_rng(seed)
        out["index_recall_at_k"] = _recall_at_k(X, index, k=k, rng=rng)
        slip_cluster = dict(enumerate(labels.tolist()))
        cluster_sizes = dict(enumerate(np.bincount(labels[labels >= 0]).tolist()))
        # as the pipeline's assigner keeps them: a joining slip is averaged against them
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.arange(len(cluster_sizes) + 1))
        cluster_members = {
            c: order[bounds[c] : bounds[c + 1]].tolist() for c in range(len(cluster_sizes))
        }
        Q = more_slips(writers[rng.choice(n, size=queries)], params, seed=seed + 7)
        lat = []
        # the live points, as the pipeline assigns (raw cosine when the calibration has none),
        # with an offsets cache that starts cold, as an assigner's does after a start
        live = calibration.live or calibration
        cache: dict[int, float] = {}
        out["assign_points"] = "live" if calibration.live is not None else "raw"
        for q in Q:
            t = time.perf_counter()
            a = assign_incremental(
                q,
                index=index,
                slip_cluster=slip_cluster,
                calibration=live,
                k=k,
                cluster_sizes=cluster_sizes,
                offsets=cache,
                cluster_members=cluster_members,
            )
            lat.append((time.perf_counter() - t) * 1000)
            cache.update(a.new_offsets)
        out["assign_queries"] = queries
        out["assign_p50_ms"] = round(float(np.percentile(lat, 50)), 3)
        out["assign_p99_ms"] = round(float(np.percentile(lat, 99)), 3)
    out["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    return out


def _recall_at_k(X: np.ndarray, index: VectorIndex, *, k: int, rng: np.random.Generator) -> float:
    """Recall@k of the index against exact search, on 200 sample rows (chunked: no n x n)."""
    n = len(X)
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
    found = index.search(X[sample], k + 1)[1]
    hits = [len(set(best_i[i]) & (set(found[i]) - {s})) / k for i, s in enumerate(sample.tolist())]
    return round(float(np.mean(hits)), 4)


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
    ap.add_argument(
        "--index",
        choices=["hnsw", "ivf"],
        default="hnsw",
        help="index searched by incremental assignment (hnsw: the workers' VectorIndex(dim))",
    )
    ap.add_argument("--queries", type=int, default=2000, help="incremental assignments timed")
    ap.add_argument(
        "--plain", action="store_true", help="re-cluster without the augmentation (for comparison)"
    )
    ap.add_argument(
        "--calibration", default=None, help="a calibration JSON printed before: skip calibrating"
    )
    ap.add_argument("--single", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument(
        "--labelled",
        type=Path,
        action="append",
        default=None,
        help="instead: figures on a labelled image folder (repeatable), split by writer",
    )
    ap.add_argument("--jobs", type=int, default=2, help="processes for feature extraction")
    ap.add_argument(
        "--account-share",
        type=float,
        default=0.6,
        help="share of slips carrying their writer's customer account (0: all anonymous, the "
        "rule before 2026-12-06 session 8; the generated slips hold 0.6)",
    )
    args = ap.parse_args(argv)

    if args.labelled:
        for folder in args.labelled:
            res = labelled_eval(folder, jobs=args.jobs, k=args.k, seed=args.seed)
            print(json.dumps(res), flush=True)
        return 0

    if args.calibration is not None:
        calibration = Calibration.from_json(json.loads(args.calibration))
    else:
        t0 = time.perf_counter()
        calibration = calibrate(
            dim=args.dim, seed=args.seed, plain=args.plain, account_share=args.account_share
        )
        took = round(time.perf_counter() - t0, 2)
        print(json.dumps({"calibration": calibration.to_json(), "calibrate_s": took}), flush=True)
    if args.single is not None:
        res = run_one(
            args.single,
            dim=args.dim,
            k=args.k,
            calibration=calibration,
            seed=args.seed,
            kind=args.index,
            queries=args.queries,
            account_share=args.account_share,
        )
        print(json.dumps(res), flush=True)
        return 0

    sizes = [10**e for e in range(4, 7) if 10**e <= args.max_n] or [int(args.max_n)]
    results = []
    for n in sizes:
        cmd = [sys.executable, __file__, "--single", str(n)]
        cmd += ["--calibration", json.dumps(calibration.to_json())]
        cmd += ["--dim", str(args.dim), "--k", str(args.k), "--seed", str(args.seed)]
        cmd += ["--index", args.index, "--queries", str(args.queries)]
        cmd += ["--account-share", str(args.account_share)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        line = proc.stdout.strip().splitlines()[-1]
        print(line, flush=True)
        results.append(json.loads(line))
    growth = {}
    for a, b in zip(results, results[1:], strict=False):
        step = math.log(b["n"] / a["n"])
        growth[f"{a['n']}->{b['n']}"] = {
            key: {
                "ratio": round(b[key] / max(a[key], 1e-9), 2),
                "exponent": round(math.log(max(b[key], 1e-9) / max(a[key], 1e-9)) / step, 2),
            }
            for key in ("recluster_s", "recluster_cpu_s", "recluster_peak_rss_mb")
        }
    print(json.dumps({"growth": growth}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
