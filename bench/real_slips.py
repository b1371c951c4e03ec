"""Real handwriting on slips: writer retrieval when real hands are written on printed forms.

The generated slips' handwriting is drawn from fonts; real customers' is not, and the
print/handwriting separator and the page's scale normalisation decide what is left of it.
This benchmark writes the real handwriting crops of ``../shared/data/unipen-dev/`` (held-out
writers by default; ``--per-slip`` crops of one writer a slip) into the fields of slip
designs at a slip's handwriting size through the generator's scanner model
(`sample_slips.real_hands`), and runs ``sliplink eval`` on three sets of the same crops:

- ``plain``: the crops as they are (``sliplink eval`` on the UNIPEN images themselves);
- ``blank``: each crop resized as on a slip, on a page without print or stamp (what slip
  size and the scan cost, separation aside);
- ``slips``: the same on a slip design with its print and, on 80 %, a till stamp (what the
  separator costs on top).

The crops are resized by ``--scale`` (0.4: UNIPEN's capitals are ~76 px tall, a generated
writer's 24-40 px) and their strokes thickened back to a biro's width on a slip. Each set's
pixel precision / recall of the kept handwriting is reported with it (``separation``).

Run: ``PYTHONPATH=. .venv/bin/python bench/real_slips.py [--split heldout|fit] [--seeds 0,1,2]
[--out DIR] [--jobs 2] [--json F]``.  Prints the three sets' retrieval and clustering figures
as JSON; with ``--seeds`` each draw's and the draws pooled (retrieval averaged, clustering
pairs summed: one draw links too few pairs for its precision to mean much).
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

import cv2

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.eval_runs import emit, eval_report  # noqa: E402
from bench.separate import add_scores, tally, tally_summary  # noqa: E402
from cv.preprocess import handwriting_mask  # noqa: E402
from cv.separate import pixel_scores  # noqa: E402
from sample_slips.real_hands import SLIP_SCALE, by_writer_slips, write_real_set  # noqa: E402
from sample_slips.real_hands import UNIPEN_DIR as UNIPEN  # noqa: E402
from sample_slips.splits import templates_for, unipen_split  # noqa: E402


def build(
    rows: list[dict],
    out: Path,
    *,
    scale: float,
    printed: bool,
    seed: int,
    split: str,
    per_slip: int,
) -> Path:
    """One slip per ``per_slip`` crops of a writer, on the ``split``'s designs."""
    return write_real_set(
        by_writer_slips(rows, per_slip),
        out,
        designs=templates_for(split),
        scale=scale,
        printed=printed,
        seed=seed,
    )


def separation(folder: Path, labels: Path) -> dict:
    """Pixel precision / recall of the kept handwriting (`cv.preprocess.handwriting_mask`)
    against the rendered masks, pooled over the set (as `bench/separate.py` scores)."""
    acc = tally()
    with labels.open() as fh:
        names = [r["image"] for r in csv.DictReader(fh)]
    for name in names:
        image = cv2.imread(str(folder / name), cv2.IMREAD_GRAYSCALE)
        stem = Path(name).stem
        hm = cv2.imread(str(folder / "masks" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE) > 0
        pm = cv2.imread(str(folder / "masks" / f"{stem}_print.png"), cv2.IMREAD_GRAYSCALE) > 0
        add_scores(acc, pixel_scores(handwriting_mask(image), hm, pm))
    return tally_summary(acc)


SUMMARY_KEYS = (
    "n",
    "skipped",
    "no_handwriting",
    "map",
    "top1",
    "top5",
    "norm_map",
    "norm_top1",
    "norm_top5",
    "by_kind",
    "pairwise_precision",
    "pairwise_recall",
    "pairwise_f1",
    "ari",
    "best_pairwise_f1",
    "live_precision",
    "live_recall",
    "pairs_right",
    "pairs_linked",
    "pairs_true",
    "live_pairs_right",
    "live_pairs_linked",
    "live_pairs_true",
)
# retrieval figures averaged over draws; pair counts summed (precision from the pooled pairs:
# a draw links a handful of pairs, one wrong link moves its own precision by 0.1-0.7)
MEAN_KEYS = ("norm_map", "norm_top1", "norm_top5", "map", "top1", "no_handwriting")


def _summary(report: dict) -> dict:
    return {k: report[k] for k in SUMMARY_KEYS if k in report}


def pooled(draws: list[dict]) -> dict:
    """One set's figures over several draws: retrieval averaged, clustering pairs pooled."""
    out: dict = {k: round(sum(d[k] for d in draws) / len(draws), 4) for k in MEAN_KEYS}
    for prefix in ("", "live_"):
        right, linked, true_pairs = (
            sum(d[f"{prefix}pairs_{k}"] for d in draws) for k in ("right", "linked", "true")
        )
        out[f"{prefix}pairs"] = [right, linked, true_pairs]
        out[f"{prefix}precision"] = round(right / linked, 4) if linked else None
        out[f"{prefix}recall"] = round(right / true_pairs, 4) if true_pairs else None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--split",
        choices=("heldout", "fit"),
        default="heldout",
        help="which UNIPEN writers (fit: for choosing between variants)",
    )
    ap.add_argument("--scale", type=float, default=SLIP_SCALE)
    ap.add_argument("--per-slip", type=int, default=1, help="crops of one writer on a slip")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--seeds",
        default=None,
        help="several draws, e.g. 0,1,2: each one and all pooled (overrides --seed)",
    )
    ap.add_argument(
        "--out", type=Path, default=None, help="keep the sets here (default: a temporary folder)"
    )
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--model", default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if not (UNIPEN / "labels.csv").exists():
        print(f"error: {UNIPEN} not found", file=sys.stderr)
        return 2
    with (UNIPEN / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    fit, held = unipen_split({r["writer"] for r in rows})
    rows = [r for r in rows if r["writer"] in (held if args.split == "heldout" else fit)]
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        plain_labels = root / "plain_labels.csv"
        root.mkdir(parents=True, exist_ok=True)
        with plain_labels.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        seeds = [int(v) for v in args.seeds.split(",")] if args.seeds else [args.seed]
        result: dict = {
            "split": args.split,
            "crops": len(rows),
            "scale": args.scale,
            "seeds": seeds,
            "per_slip": args.per_slip,
        }
        print("evaluating plain", file=sys.stderr)
        result["plain"] = _summary(
            eval_report(UNIPEN / "images", plain_labels, jobs=args.jobs, model=args.model)
        )
        for name, printed in (("blank", False), ("slips", True)):
            draws = []
            for seed in seeds:
                folder = root / (name if len(seeds) == 1 else f"{name}_{seed}")
                labels = build(
                    rows,
                    folder,
                    scale=args.scale,
                    printed=printed,
                    seed=seed,
                    split=args.split,
                    per_slip=args.per_slip,
                )
                print(f"evaluating {name}, draw {seed}", file=sys.stderr)
                draws.append(
                    _summary(eval_report(folder, labels, jobs=args.jobs, model=args.model))
                )
                draws[-1]["separation"] = separation(folder, labels)
            result[name] = draws[0] if len(seeds) == 1 else {"draws": draws, **pooled(draws)}
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
