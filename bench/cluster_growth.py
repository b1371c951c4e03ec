"""Does the batch clustering's operating point hold as the collection grows?

The merge threshold is calibrated on the fit data's folds (a few hundred slips each) for
pairwise precision 0.98 (`cv.embed._operating_points`).  An operator's collection is far
larger, and every extra writer brings more look-alikes.  This clusters random subsets of
30, 60, 120, 240 held-out writers (6 slips each, held-out fonts and designs) as the product
re-clusters them (`cv.cluster.cluster_calibrated`, with the slips' customer accounts) and
prints, per size, pairwise precision / recall / F1 at the model's calibrated threshold (as
the product raises it for the collection's size, `Calibration.for_collection`) and
the lowest threshold that would reach precision 0.98 on those slips (an oracle: what the
calibration would need to know).  Pair counts are pooled over ``--draws`` draws per size.

    PYTHONPATH=. .venv/bin/python bench/cluster_growth.py [--model M] [--json F]

The slips are generated once into ``--dir`` (240 writers x 6, seed 15, held-out split), or
read from a labelled folder (``--dir D --labels L``); embeddings are cached in
/tmp/sliplink-bench per folder, rows and model version.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.accuracy import _accounts, _generate  # noqa: E402
from cv.cluster import calibration_of, cluster_calibrated  # noqa: E402
from cv.embed import EmbeddingModel, embed_files, load_default_model  # noqa: E402
from cv.metrics import pair_counts  # noqa: E402

SWEEP = np.round(np.arange(0.20, 0.62, 0.02), 2)


def _embeddings(
    model: EmbeddingModel, folder: Path, rows: list[dict], jobs: int
) -> tuple[np.ndarray, np.ndarray]:
    """The slips' vectors and whether each has usable handwriting (cached)."""
    # the usable flags come from preprocessing: its code is part of the key
    key = "\n".join(r["image"] for r in rows).encode()
    key += (REPO_ROOT / "cv" / "preprocess.py").read_bytes()
    digest = hashlib.sha256(key).hexdigest()[:8]
    cache = Path("/tmp/sliplink-bench") / f"growth_{folder.name}_{digest}_{model.version}.npz"
    cache.parent.mkdir(parents=True, exist_ok=True)
    if cache.is_file():
        with np.load(cache) as got:
            return got["x"], got["usable"]
    usable: list[bool] = []
    x, errors = embed_files(
        [folder / r["image"] for r in rows], model=model, jobs=jobs, usable_out=usable
    )
    if any(errors):
        raise SystemExit(f"{folder}: unreadable slips: {[e for e in errors if e][:3]}")
    np.savez(cache, x=x, usable=np.array(usable, dtype=bool))
    return x, np.array(usable, dtype=bool)


def _pooled(
    x: np.ndarray,
    usable: np.ndarray,
    writers: np.ndarray,
    accounts: np.ndarray,
    draws: list[np.ndarray],
    cal,
) -> tuple[float, float, float]:
    """(precision, recall, F1) of pair counts summed over the draws (row masks)."""
    right = linked = true = 0
    for rows in draws:
        # slips without usable handwriting stay on their own, as the service leaves them
        labels = np.full(int(rows.sum()), -1, dtype=np.int64)
        use = usable[rows]
        labels[use] = cluster_calibrated(x[rows][use], cal, accounts=accounts[rows][use])[0]
        r, lk, t = pair_counts(writers[rows], labels)
        right, linked, true = right + r, linked + lk, true + t
    p = right / linked if linked else 1.0
    rec = right / true if true else 0.0
    return p, rec, 2 * p * rec / (p + rec) if p + rec else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/sliplink-bench/gen_growth"))
    ap.add_argument(
        "--labels",
        type=Path,
        default=None,
        help="a labelled folder's labels.csv (images in --dir) instead of generated slips",
    )
    ap.add_argument("--sizes", default="30,60,120,240", help="writers per collection")
    ap.add_argument("--draws", type=int, default=4, help="random writer subsets per size")
    ap.add_argument("--target", type=float, default=0.98, help="pairwise precision floor")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    folder = args.dir
    if args.labels is None:
        _generate(folder, writers=max(sizes), per=6, seed=15, split="heldout", jobs=args.jobs)
    with (args.labels or folder / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    model = EmbeddingModel.load(args.model) if args.model else load_default_model()
    cal = calibration_of(model)
    if cal.batch is None:
        raise SystemExit(f"{model.version}: no batch calibration recorded")
    x, usable = _embeddings(model, folder, rows, args.jobs)
    writers = np.array([r["writer"] for r in rows])
    accounts = _accounts(rows)
    ids = np.unique(writers)
    if max(sizes) > len(ids):
        raise SystemExit(f"{folder} holds {len(ids)} writers, fewer than {max(sizes)}")
    threshold = cal.batch.merge_threshold
    results: list[dict] = []
    print(
        f"model {model.version}, calibrated merge threshold {threshold:.2f};"
        f" {int((~usable).sum())} slips without usable handwriting left out"
    )
    for size in sizes:
        rng = np.random.default_rng(size)
        n_draws = 1 if size == len(ids) else args.draws
        draws = [np.isin(writers, rng.choice(ids, size, replace=False)) for _ in range(n_draws)]
        p, r, f1 = _pooled(x, usable, writers, accounts, draws, cal)
        oracle = None
        for t in SWEEP:  # lowest threshold reaching the floor on these slips
            # t as it stands, not raised for the collection's size (Calibration.for_collection)
            fixed = dataclasses.replace(cal.batch, merge_threshold=t, impostor_tail=None)
            at = dataclasses.replace(cal, batch=fixed)
            op, orec, _ = _pooled(x, usable, writers, accounts, draws, at)
            if op >= args.target and orec > 0:
                oracle = {"threshold": float(t), "precision": op, "recall": orec}
                break
        slips = int(draws[0].sum())
        used = cal.batch.for_collection(slips).merge_threshold
        entry = {"writers": size, "slips": slips, "draws": n_draws, "threshold": used,
                 "precision": p, "recall": r, "f1": f1, "oracle": oracle}  # fmt: skip
        results.append(entry)
        best = (
            f"threshold {oracle['threshold']:.2f} (R {oracle['recall']:.3f})"
            if oracle
            else f"none of {SWEEP[0]:.2f}-{SWEEP[-1]:.2f}"
        )
        print(
            f"{size:4d} writers ({slips} slips) at {used:.3f}: P {p:.3f} R {r:.3f} F1 {f1:.3f}"
            f" | P >= {args.target} first at {best}",
            flush=True,
        )
    if args.json:
        out = {"model": model.version, "merge_threshold": threshold, "sizes": results}
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
