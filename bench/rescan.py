"""Re-scan stability: how far a slip's embedding moves when the same paper is scanned again.

A writer link is only as reliable as the vector of one slip is repeatable. For each slip this
perturbs the scan the way a second pass through a scanner would — JPEG re-encoded at quality
80, turned 0.3 degrees, shifted 3 px, scaled by 0.97 — and prints the median and 10th
percentile cosine between the original's embedding and the perturbed one's, next to the
median cosine of two different slips by the same writer and by different writers (the gap the
links live in). Writes bench/results/rescan.json.

    PYTHONPATH=. .venv/bin/python bench/rescan.py --slips sample_slips/set -n 40
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def _affine(image: np.ndarray, m: np.ndarray) -> np.ndarray:
    rows, cols = image.shape
    return cv2.warpAffine(image, m, (cols, rows), flags=cv2.INTER_LINEAR, borderValue=235)


def _jpeg(image: np.ndarray) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 greyscale image
        raise RuntimeError("JPEG encoding failed")
    decoded = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    if decoded is None:  # pragma: no cover - the bytes were just encoded
        raise RuntimeError("JPEG decoding failed")
    return np.asarray(decoded)


def _turn(image: np.ndarray) -> np.ndarray:
    rows, cols = image.shape
    return _affine(image, cv2.getRotationMatrix2D((cols / 2, rows / 2), 0.3, 1.0))


def _shift(image: np.ndarray) -> np.ndarray:
    return _affine(image, np.array([[1, 0, 3], [0, 1, 3]], np.float32))


def _scale(image: np.ndarray) -> np.ndarray:
    return cv2.resize(image, None, fx=0.97, fy=0.97, interpolation=cv2.INTER_AREA)


PERTURBATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "jpeg_q80": _jpeg,
    "turn_0.3deg": _turn,
    "shift_3px": _shift,
    "scale_0.97": _scale,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--slips", type=Path, default=REPO_ROOT / "sample_slips" / "set")
    ap.add_argument("-n", type=int, default=40, help="slips to perturb")
    ap.add_argument("--json", type=Path, default=REPO_ROOT / "bench/results/rescan.json")
    args = ap.parse_args()

    from threadpoolctl import threadpool_limits

    from cv.embed import load_default_model
    from cv.preprocess import load_image

    threadpool_limits(1)
    cv2.setNumThreads(1)
    model = load_default_model()
    with (args.slips / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    images = [load_image((args.slips / r["image"]).read_bytes()) for r in rows]
    writers = np.array([r["writer"] for r in rows])
    z = model.transform(images)
    sim = z @ z.T
    upper = np.triu_indices(len(rows), k=1)
    same = (writers[:, None] == writers[None, :])[upper]
    reference = {
        "same_writer_median": float(np.median(sim[upper][same])) if same.any() else None,
        "different_writer_median": float(np.median(sim[upper][~same])),
    }
    results: dict[str, dict[str, float]] = {}
    for name, perturb in PERTURBATIONS.items():
        again = model.transform([perturb(im) for im in images[: args.n]])
        cos = (z[: args.n] * again).sum(axis=1)
        results[name] = {
            "median": float(np.median(cos)),
            "p10": float(np.percentile(cos, 10)),
            "min": float(cos.min()),
        }
        r = results[name]
        print(f"{name:12s} cosine to itself: median {r['median']:.3f}  p10 {r['p10']:.3f}")
    print(
        f"reference: same writer, other slip {reference['same_writer_median']:.3f};"
        f" different writers {reference['different_writer_median']:.3f}"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    meta = {"model": model.version, "slips": len(rows), "perturbed": min(args.n, len(rows))}
    out = {"meta": meta, "reference": reference, "results": results}
    args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
