"""Build the letter-match reference: how different writers' slips score on real handwriting.

A letter-match score (`cv.glyphs.compare_glyphs`) means little alone: it rises with the
number of letters compared (more letters, more chances of a close match).  This script
scores every pair of different writers' images among fit-split real handwriting (never the
held-out writers): the UNIPEN fit writers' crops as they are, and the same crops written on
fit-split slip designs one to four a slip (`sample_slips.real_hands`, seeds 7-10), and
stores, per bin of the smaller glyph count of the pair, the quantiles of their scores in
``cv/models/glyph_reference.json``.  `cv.glyphs.different_writer_share` reads it: "higher
than 97 % of different writers' pairs with as many letters".

Run: ``PYTHONPATH=. .venv/bin/python bench/glyph_reference.py [--out FILE]`` (about 3
minutes); prints the table.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.glyphs import score_matrix  # noqa: E402
from cv.glyphs import REFERENCE_BINS, REFERENCE_PATH, REFERENCE_QUANTILES, glyph_set  # noqa: E402
from sample_slips.real_hands import UNIPEN_DIR, by_writer_slips, write_real_set  # noqa: E402
from sample_slips.splits import templates_for, unipen_split  # noqa: E402

MAX_PAIRS = 40_000  # per set, a seeded sample beyond that
SLIP_SETS = ((1, 7), (2, 8), (3, 10), (4, 9))  # (crops a slip, seed)


def different_writer_scores(folder: Path, rows: list[dict], rng: np.random.Generator) -> list:
    """(smaller glyph count, score) of different writers' image pairs of one set."""
    sets = [glyph_set(cv2.imread(str(folder / r["image"]), cv2.IMREAD_GRAYSCALE)) for r in rows]
    scores = score_matrix(sets)
    writers = [r["writer"] for r in rows]
    pairs = [(i, j) for i in range(len(rows)) for j in range(i + 1, len(rows))]
    pairs = [(i, j) for i, j in pairs if writers[i] != writers[j]]
    if len(pairs) > MAX_PAIRS:
        pairs = [pairs[k] for k in rng.choice(len(pairs), MAX_PAIRS, replace=False)]
    return [
        (min(len(sets[i]), len(sets[j])), float(scores[i, j]))
        for i, j in pairs
        if not np.isnan(scores[i, j])
    ]


def build_reference(unipen_dir: Path = UNIPEN_DIR) -> dict:
    with (unipen_dir / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    fit, _ = unipen_split({r["writer"] for r in rows})
    rows = [r for r in rows if r["writer"] in fit]
    rng = np.random.default_rng(0)
    scores = different_writer_scores(unipen_dir / "images", rows, rng)
    with tempfile.TemporaryDirectory() as tmp:
        for per_slip, seed in SLIP_SETS:
            folder = Path(tmp) / f"slips_{per_slip}"
            labels = write_real_set(
                by_writer_slips(rows, per_slip),
                folder,
                designs=templates_for("fit"),
                seed=seed,
                unipen_dir=unipen_dir,
            )
            with labels.open() as fh:
                scores += different_writer_scores(folder, list(csv.DictReader(fh)), rng)
    table = np.array(scores, dtype=np.float64)
    bins = []
    for lo, hi in zip(REFERENCE_BINS[:-1], REFERENCE_BINS[1:], strict=True):
        got = table[(table[:, 0] >= lo) & (table[:, 0] < hi), 1]
        bins.append(
            {
                "glyphs": [int(lo), int(hi) - 1],
                "pairs": int(got.size),
                "quantiles": np.round(np.quantile(got, REFERENCE_QUANTILES), 4).tolist(),
            }
        )
    return {
        "what": "letter-match scores of different writers' image pairs, by the smaller "
        "glyph count of the pair",
        "data": f"{len(fit)} UNIPEN fit writers: their crops, and the crops written on fit "
        f"slip designs (crops a slip, seed: {list(SLIP_SETS)})",
        "quantiles": list(REFERENCE_QUANTILES),
        "bins": bins,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REFERENCE_PATH)
    args = ap.parse_args(argv)
    if not (UNIPEN_DIR / "labels.csv").exists():
        print(f"error: {UNIPEN_DIR} not found", file=sys.stderr)
        return 2
    reference = build_reference()
    args.out.write_text(json.dumps(reference, indent=1) + "\n")
    for b in reference["bins"]:
        q = dict(zip(reference["quantiles"], b["quantiles"], strict=True))
        print(f"glyphs {b['glyphs']}: {b['pairs']} pairs, median {q[0.5]}, 99 % {q[0.99]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
