"""Record the clustering calibration of an already fitted model, on the data it was fitted on.

Models fitted before `cv.embed` recorded its calibration carry only the slip-to-slip pair
threshold.  This re-runs the fit's own held-out measurement (the same two-fold writer split,
the model's vocabulary, a projection fitted on the other fold) on the original fit data and
writes the calibration (`cv.cluster.Calibration`: pair threshold, cluster-merge threshold,
confidence logistic) and the re-measured pair threshold into the model file's header.  Re-run
it after a preprocessing change until the model is refitted: the similarities move.
Parameters and arrays are untouched, so the model version stays the same.

    .venv/bin/python bench/calibrate_model.py cv/models/default.npz /tmp/gen_fit \\
        --labels /tmp/gen_fit/labels.csv --unipen-fit ../shared/data/unipen-dev --jobs 2

Prints the calibration as JSON; ``--dry-run`` leaves the model file alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("directory", type=Path, help="labelled fit slips")
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--split", default="fit", help="labels.csv rows of this split")
    parser.add_argument("--unipen-fit", type=Path, action="append", default=[])
    parser.add_argument(
        "--real-fit",
        type=Path,
        action="append",
        default=[],
        help="a labelled folder of fit UNIPEN writers' crops written on slips or sheets "
        "(bench/real_slips.py --split fit --out): a source of its own, its writers the crops'",
    )
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument(
        "--fold-by", default=None, help="labels.csv column of style groups (as `sliplink train`)"
    )
    args = parser.parse_args()

    from cli.offline import _labelled_paths, list_images, read_labels
    from cv.embed import EmbeddingModel, _operating_points, extract_files, fold_groups
    from sample_slips.splits import unipen_split

    model = EmbeddingModel.load(args.model)
    paths, writers, _, accounts, groups = _labelled_paths(
        args.directory, args.labels, split=args.split or None, fold_by=args.fold_by
    )
    sources = [str(args.directory)] * len(paths)  # as `sliplink train` names them
    for folder in args.unipen_fit:  # as `sliplink train --unipen-fit` picks them
        rows = read_labels(folder / "labels.csv")
        fit, _ = unipen_split({r["writer"] for r in rows})
        img_dir = folder / "images" if (folder / "images").is_dir() else folder
        on_disk = {p.name: p for p in list_images(img_dir)}
        for r in rows:
            if r["writer"] in fit and r["image"] in on_disk:
                paths.append(on_disk[r["image"]])
                writers.append(f"unipen:{r['writer']}")
                accounts.append("")
                groups.append("")
                sources.append(str(folder))
    for folder in args.real_fit:
        # the same people as the --unipen-fit crops: named alike, so that a writer's crops
        # and slips fall in one fold (a projection never sees the writers it is scored on)
        fit = unipen_split({r["writer"] for r in read_labels(folder / "labels.csv")})[0]
        for r in read_labels(folder / "labels.csv"):
            if r["writer"] not in fit:
                sys.exit(f"{folder}: writer {r['writer']} is not a fit UNIPEN writer")
            paths.append(folder / r["image"])
            writers.append(f"unipen:{r['writer']}")
            accounts.append("")
            groups.append("")
            sources.append(str(folder))
    raws, errors = extract_files(paths, model=model, jobs=args.jobs)
    keep = [i for i, e in enumerate(errors) if e is None and raws[i] is not None]
    x = model._fuse(model._family_blocks([raws[i] for i in keep])).astype(np.float64)
    fit_writers = np.asarray([writers[i] for i in keep])
    fit_groups = fold_groups(fit_writers, [groups[i] for i in keep]) if args.fold_by else None
    folds = model._heldout_folds(x, fit_writers, None, groups=fit_groups)
    pair, calibration = _operating_points(
        folds,
        accounts=np.asarray([accounts[i] for i in keep], dtype=object),
        sources=np.asarray([sources[i] for i in keep]),
    )
    if calibration is None:
        sys.exit("no usable held-out fold: need 3+ slips of 2+ writers per fold")
    out = {
        "model": model.version,
        "images": len(keep),
        "writers": len({writers[i] for i in keep}),
        "stored_pair_threshold": model.threshold_,
        "pair_threshold": pair,
        "calibration": calibration.to_json(),
    }
    print(json.dumps(out, indent=2))
    if not args.dry_run:
        # the pair threshold is re-measured too (same data, same method as the fit)
        model.calibration_, model.threshold_ = calibration, pair
        model.save(args.model)
        print(f"wrote the calibration into {args.model} ({model.version})", file=sys.stderr)


if __name__ == "__main__":
    main()
