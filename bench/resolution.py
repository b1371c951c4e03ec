"""Scan resolution: writer retrieval and clustering when slips are scanned at another dpi.

Shops' scanners differ: a slip read at 225 dpi where the reference is 300 has 0.75 of the
pixels a side.  For each factor this resizes every slip of a labelled set (area averaging
down, cubic up, JPEG quality 90) and runs ``sliplink eval`` twice: on the whole set at that
factor, and on a mixed set where every other slip of each writer keeps the reference
resolution (slips of one customer from two shops).  Prints the figures as JSON.

Run: ``PYTHONPATH=. .venv/bin/python bench/resolution.py DIR [--labels L]
[--factors 0.65,0.75,0.9,1.5] [--jobs 2] [--json F]``
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
from pathlib import Path

import cv2

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.eval_runs import emit, eval_report  # noqa: E402

KEYS = (
    "norm_map", "norm_top1", "map", "top1", "pairwise_precision", "pairwise_recall",
    "pairwise_f1", "live_precision", "live_recall", "no_handwriting",
)  # fmt: skip


def rescanned(src: Path, rows: list[dict], out: Path, factor: float, *, mixed: bool) -> None:
    """The set's slips resized by ``factor`` into ``out`` (with ``mixed``, only every other
    slip of each writer), and its labels."""
    out.mkdir(parents=True)
    seen: dict[str, int] = {}
    for r in rows:
        k = seen.get(r["writer"], 0)
        seen[r["writer"]] = k + 1
        if mixed and k % 2:
            shutil.copy(src / r["image"], out / r["image"])
            continue
        image = cv2.imread(str(src / r["image"]), cv2.IMREAD_GRAYSCALE)
        interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
        small = cv2.resize(image, None, fx=factor, fy=factor, interpolation=interp)
        ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:  # pragma: no cover - OpenCV always encodes a uint8 greyscale image
            raise RuntimeError("JPEG encoding failed")
        (out / r["image"]).write_bytes(buf.tobytes())  # the labels' names (the loader sniffs)
    with (out / "labels.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def evaluate(folder: Path, *, jobs: int, model: str | None) -> dict:
    report = eval_report(folder, folder / "labels.csv", jobs=jobs, model=model)
    return {k: round(report[k], 4) for k in KEYS if k in report}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--labels", type=Path, default=None, help="default: DIR/labels.csv")
    ap.add_argument("--factors", default="0.65,0.75,0.9,1.5")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--model", default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    labels = args.labels or args.dir / "labels.csv"
    try:
        factors = [float(f) for f in args.factors.split(",")]
        with labels.open() as fh:
            rows = list(csv.DictReader(fh))
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not rows or any(not f > 0 for f in factors):
        print("error: need labelled slips and positive --factors", file=sys.stderr)
        return 2
    result: dict = {"dir": str(args.dir), "slips": len(rows), "factors": {}}
    with tempfile.TemporaryDirectory() as tmp:
        print("evaluating the reference resolution", file=sys.stderr)
        result["reference"] = evaluate(args.dir, jobs=args.jobs, model=args.model)
        for f in factors:
            entry = {}
            for mixed in (False, True):
                folder = Path(tmp) / f"{f}-{'mixed' if mixed else 'all'}"
                rescanned(args.dir, rows, folder, f, mixed=mixed)
                print(f"evaluating {folder.name}", file=sys.stderr)
                key = "mixed" if mixed else "all"
                entry[key] = evaluate(folder, jobs=args.jobs, model=args.model)
                shutil.rmtree(folder)
            result["factors"][str(f)] = entry
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
