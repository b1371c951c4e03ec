"""Pairwise decisions with and without score normalisation, on held-out generated slips.

The clusterer links two slips when their cosine clears a threshold calibrated for pairwise
precision 0.98. Some slips are close to everything (little ink, generic shapes), so one
global threshold is either too low for them or too high for everyone else. This benchmark
measures what subtracting a per-slip offset from each pair's score would buy:

- ``cohort-k``: the mean of the slip's k highest similarities to a fixed cohort of fit-split
  embeddings (a property of the slip alone, computable when it is embedded);
- ``collection-k``: the mean of its k highest similarities to the other slips of the
  collection (depends on how many slips each writer has in it).

For each it prints pairwise recall at precision 0.98 and the best pairwise F1 over all
thresholds, and writes bench/results/score_norm.json. The product uses the collection's
neighbour ranks 5-15 (`cv.cluster.score_offsets`). On validation writers of the fit split
(60 writers x 6, model fitted on the other 140; raw / 0-10 / 3-15 / 5-15 / 5-20 / 5-30 / 8-20)
pairwise recall at precision 0.98 was 0.073 / 0.411 / 0.442 / 0.456 / 0.392 / 0.343 / 0.340
and clustering recall there 0.182 / 0.796 / 0.752 / 0.723 / 0.699 / 0.596 / 0.682: ranks 0-10
cluster better when every writer has ~6 slips, but a regular's first ranks are all his own
slips, which would raise his offset and keep his new slips out, so 5-15.

    PYTHONPATH=. .venv/bin/python bench/score_norm.py --heldout /tmp/gen_held --fit /tmp/gen_fit
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def _embed(directory: Path, step: int, jobs: int) -> tuple[np.ndarray, np.ndarray]:
    from cv.embed import embed_files, load_default_model

    with (directory / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))[::step]
    vectors, errors = embed_files(
        [directory / r["image"] for r in rows], model=load_default_model(), jobs=jobs
    )
    keep = [i for i, e in enumerate(errors) if not e]
    z = np.stack([vectors[i] for i in keep]).astype(np.float32)
    return z, np.array([rows[i]["writer"] for i in keep])


def _pair_scores(scores: np.ndarray, same: np.ndarray, precision: float) -> dict[str, float]:
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(same[order])
    prec = tp / np.arange(1, len(order) + 1)
    rec = tp / max(1, int(same.sum()))
    ok = np.nonzero(prec >= precision)[0]
    f1 = 2 * prec * rec / np.maximum(prec + rec, 1e-12)
    best = int(np.argmax(f1))
    return {
        "recall_at_precision": float(rec[ok[-1]]) if ok.size else 0.0,
        "best_f1": float(f1[best]),
        "best_f1_precision": float(prec[best]),
        "best_f1_recall": float(rec[best]),
    }


def _top_mean(sim: np.ndarray, k: int) -> np.ndarray:
    return np.sort(sim, axis=1)[:, -k:].mean(axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--heldout", type=Path, required=True, help="generated held-out set")
    ap.add_argument("--fit", type=Path, required=True, help="generated fit set (the cohort)")
    ap.add_argument("--cohort-step", type=int, default=2, help="every n-th fit slip")
    ap.add_argument("--precision", type=float, default=0.98)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", type=Path, default=REPO_ROOT / "bench/results/score_norm.json")
    args = ap.parse_args()

    z, writers = _embed(args.heldout, 1, args.jobs)
    cohort, _ = _embed(args.fit, args.cohort_step, args.jobs)
    sim = z @ z.T
    upper = np.triu_indices(len(writers), k=1)
    same = (writers[:, None] == writers[None, :])[upper]
    others = sim.copy()
    np.fill_diagonal(others, -np.inf)
    to_cohort = z @ cohort.T

    offsets: dict[str, np.ndarray] = {"raw": np.zeros(len(z), np.float32)}
    for k in (5, 10, 50):
        offsets[f"cohort-{k}"] = _top_mean(to_cohort, k)
    for k in (5, 10, 50):
        offsets[f"collection-{k}"] = _top_mean(others, k)
    results = {}
    for name, b in offsets.items():
        adjusted = sim - 0.5 * (b[:, None] + b[None, :])
        results[name] = _pair_scores(adjusted[upper], same, args.precision)
        r = results[name]
        print(
            f"{name:14s} recall at precision {args.precision}: {r['recall_at_precision']:.3f}"
            f"  best F1 {r['best_f1']:.3f} (P {r['best_f1_precision']:.2f}"
            f" R {r['best_f1_recall']:.2f})"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    meta = {"slips": len(z), "writers": len(set(writers.tolist())), "cohort": len(cohort)}
    args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
