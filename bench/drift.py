"""Drift watch figures: how far (KS distance of pair-score distributions) held-out slips,
degraded scans and sideways scans sit from a model's references.

Fits a model on half the writers of a labelled folder, then compares the pair scores of the
other writers' slips (clean, blurred and darkened, rotated 90 degrees) with two references:
the fitting data's own scores and a held-out half.  Shows why the drift watch compares with
held-out evaluation data: the fitting writers separate more than any new writers do.

    .venv/bin/python bench/drift.py sample_slips/set --labels sample_slips/set/labels.csv \\
        --out /tmp/drift.json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import cv2

    from cv.embed import EmbeddingModel
    from cv.preprocess import load_image
    from workers.rollout import ks_to_reference, pair_score_sample, score_reference

    with args.labels.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    writers = sorted({r["writer"] for r in rows})
    fit_writers = set(writers[: len(writers) // 2])
    fit = [r for r in rows if r["writer"] in fit_writers]
    new = [r for r in rows if r["writer"] not in fit_writers]
    images = {r["image"]: load_image((args.directory / r["image"]).read_bytes()) for r in rows}
    model = EmbeddingModel(n_components=64)
    raws = {name: model.extract(img) for name, img in images.items()}
    model.fit_raw([raws[r["image"]] for r in fit], [r["writer"] for r in fit])

    def embed(names: list[str], change=None) -> np.ndarray:  # type: ignore[no-untyped-def]
        if change is None:
            return model.transform_raw([raws[n] for n in names])
        return np.stack([model.embed(np.ascontiguousarray(change(images[n]))) for n in names])

    def degrade(img: np.ndarray) -> np.ndarray:
        blurred = cv2.GaussianBlur(img, (5, 5), 0).astype(np.int32)
        return np.clip(blurred - 40, 0, 255).astype(np.uint8)

    x_fit = embed([r["image"] for r in fit])
    names = [r["image"] for r in new]
    half = len(names) // 2
    x_new = embed(names)
    references = {
        "fitting data": score_reference(x_fit, source="fit"),
        "held-out half": score_reference(x_new[:half], source="held-out"),
    }
    samples = {
        "held-out slips": x_new[half:],
        "blurred and darker scans": embed(names[half:], degrade),
        "scanned sideways": embed(names[half:], np.rot90),
    }
    result: dict[str, dict[str, float]] = {}
    for ref_name, ref in references.items():
        for name, x in samples.items():
            ks = ks_to_reference(pair_score_sample(x), ref)
            result.setdefault(ref_name, {})[name] = round(ks, 3)
            print(f"reference {ref_name:14}  {name:25} KS {ks:.3f}")
    out = {"images": len(rows), "fit_writers": len(fit_writers), "ks": result}
    if args.out:
        args.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
