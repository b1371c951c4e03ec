"""Incremental assignment against batch clustering, on a labelled folder of slips.

The pipeline assigns each slip as it arrives (`cv.cluster.assign_incremental`: join the
cluster whose evidence clears the merge threshold, else found one with unclustered
neighbours over the pair threshold, else stay alone), and a scheduled re-cluster
(`cv.cluster.cluster_calibrated`) redoes it in one batch.  This benchmark replays a folder in
random arrival orders through the same decisions (`cv.cluster.replay_arrivals`, the
assigner's offsets cache included), with each of the model's operating points: the raw one,
the model's ``live`` points when it has them (what the pipeline assigns with) and the
normalised ``batch`` ones when they apply to plain vectors, and prints pairwise precision /
recall / F1 of each, replayed and clustered in one batch.  Figures per model and session are
in bench/ACCURACY.md (live assignment entries of sessions 14 and 15).

    PYTHONPATH=. .venv/bin/python bench/incremental.py /tmp/gen_held \
        --labels /tmp/gen_held/labels.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from cv.cluster import calibration_of, cluster_calibrated, replay_arrivals  # noqa: E402
from cv.embed import EmbeddingModel, embed_files, load_default_model  # noqa: E402
from cv.metrics import clustering_scores  # noqa: E402


def _figures(writers: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    s = clustering_scores(writers, labels)
    keys = ("pairwise_precision", "pairwise_recall", "pairwise_f1", "ari")
    return {k: round(float(s[k]), 4) for k in keys}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("directory", type=Path)
    ap.add_argument("--labels", type=Path, required=True, help="CSV with image,writer")
    ap.add_argument("--model", type=Path, default=None, help="default: the shipped model")
    ap.add_argument("--orders", type=int, default=3, help="random arrival orders replayed")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", type=Path, default=REPO_ROOT / "bench/results/incremental.json")
    args = ap.parse_args()

    model = EmbeddingModel.load(args.model) if args.model else load_default_model()
    with args.labels.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    usable_out: list[bool] = []
    vectors, errors = embed_files(
        [args.directory / r["image"] for r in rows],
        model=model,
        jobs=args.jobs,
        usable_out=usable_out,
    )
    keep = [i for i, e in enumerate(errors) if e is None]
    x = np.stack([vectors[i] for i in keep]).astype(np.float32)
    writers = np.array([rows[i]["writer"] for i in keep])
    # slips without usable handwriting are never indexed or clustered by the service: they
    # stay on their own here too (they all embed alike, so replayed they would link)
    usable = np.array([usable_out[i] for i in keep], dtype=bool)

    def on_usable(labels_of_usable: np.ndarray) -> np.ndarray:
        labels = np.full(len(x), -1, dtype=np.int64)
        labels[usable] = labels_of_usable
        return labels

    calibration = calibration_of(model)
    points = {"raw": replace(calibration, batch=None, live=None)}
    if calibration.live is not None:  # what the pipeline assigns with when the model has it
        points["live"] = calibration.live
    if calibration.batch is not None and calibration.batch.augment is None:
        points["normalised"] = calibration.batch
    elif calibration.batch is not None:
        # measured on augmented vectors (batch clustering pulls each slip towards its nearest
        # ones); an arriving slip is scored on its own vector, so these points do not apply
        print("normalised: the model's batch points are on augmented vectors; skipped",
              file=sys.stderr)  # fmt: skip
    result: dict[str, object] = {
        "model": model.version,
        "slips": len(x),
        "no_handwriting": int((~usable).sum()),
    }
    for name, cal in points.items():
        xu = x[usable]
        batch = _figures(writers, on_usable(cluster_calibrated(xu, cal)[0]))
        orders = [np.random.default_rng(seed).permutation(len(xu)) for seed in range(args.orders)]
        runs = [_figures(writers, on_usable(replay_arrivals(xu, cal, o))) for o in orders]
        mean = {k: round(float(np.mean([r[k] for r in runs])), 4) for k in runs[0]}
        result[name] = {
            "merge_threshold": cal.merge_threshold,
            "pair_threshold": round(cal.pair_threshold, 4),
            "batch": batch,
            "incremental_mean": mean,
            "incremental_runs": runs,
        }
        print(
            f"{name:10s} batch P {batch['pairwise_precision']:.3f} R {batch['pairwise_recall']:.3f}"
            f" F1 {batch['pairwise_f1']:.3f} | incremental (mean of {args.orders} orders)"
            f" P {mean['pairwise_precision']:.3f} R {mean['pairwise_recall']:.3f}"
            f" F1 {mean['pairwise_f1']:.3f}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
