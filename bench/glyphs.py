"""Letter matching (`cv.glyphs`) on a labelled folder: how well the reviewer's letter pairs
tell writers apart, alone and beside the embedding.

For every image: its glyphs (`cv.glyphs.glyph_set`) and, with ``--fused``, the shipped
embedding.  Every pair of images gets its glyph score (`cv.glyphs.compare_glyphs`).  Prints
as JSON: retrieval by the glyph score alone (leave-one-out mAP / top-1, per ``kind`` when the
labels have one), the same-writer and different-writer score quantiles and their ROC AUC,
glyphs per image, CPU ms per image (glyph extraction) and, with ``--fused``, the embedding's
ranking (`cv.cluster.ranking_scores`) alone and with the z-scored glyph score added at
``--weights``.

Run: ``PYTHONPATH=. .venv/bin/python bench/glyphs.py DIR --labels L [--fused]
[--weights 0.3,0.5] [--json F]``
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from cv.glyphs import compare_glyphs, glyph_set  # noqa: E402
from cv.metrics import retrieval_by_kind, retrieval_scores, top1_attribute_rate  # noqa: E402
from cv.preprocess import load_image  # noqa: E402


def score_matrix(sets: list) -> np.ndarray:
    """Symmetric (n, n) glyph scores; NaN where a slip has no glyphs."""
    n = len(sets)
    s = np.full((n, n), np.nan, np.float32)
    for i in range(n):
        for j in range(i + 1, n):
            got = compare_glyphs(sets[i], sets[j], top=0).score
            if got is not None:
                s[i, j] = s[j, i] = got
    return s


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a same-writer pair outscores a different-writer pair), ties half (ROC AUC)."""
    from sklearn.metrics import roc_auc_score

    labels = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    return float(roc_auc_score(labels, np.r_[pos, neg]))


def _retrieval(
    sim: np.ndarray, writers: np.ndarray, kinds: np.ndarray | None, templates: np.ndarray | None
) -> dict:
    filled = np.where(np.isnan(sim), -1.0, sim)
    out = {
        k: round(v, 4)
        for k, v in retrieval_scores(filled, writers).items()
        if k in ("map", "top1", "top5")
    }
    if kinds is not None:
        for kind, got in retrieval_by_kind(filled, writers, kinds).items():
            out[f"{kind}_queries"] = {k: round(got[k], 4) for k in ("map", "top1")}
            m = kinds == kind
            if m.sum() > 2:  # and within a gallery of that kind only
                sub = retrieval_scores(filled[np.ix_(m, m)], writers[m])
                out[f"{kind}_only"] = {k: round(sub[k], 4) for k in ("map", "top1")}
    if templates is not None:
        got = top1_attribute_rate(filled, templates)
        out["template_share"] = {k: round(float(v), 4) for k, v in got.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--labels", type=Path, default=None)
    ap.add_argument("--fused", action="store_true", help="also the embedding and the sum")
    ap.add_argument("--weights", default="0.3,0.5")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    labels = args.labels or args.folder / "labels.csv"
    with labels.open() as fh:
        rows = list(csv.DictReader(fh))
    paths = [args.folder / r["image"] for r in rows]
    writers = np.array([r["writer"] for r in rows])
    kinds = np.array([r["kind"] for r in rows]) if "kind" in rows[0] else None
    templates = np.array([r["template"] for r in rows]) if "template" in rows[0] else None
    ranked = None
    if args.fused:  # first: worker processes forked after OpenCV has started threads can hang
        from cli.offline import _embed, _model_calibration
        from cv.cluster import ranking_scores
        from cv.design import design_penalised
        from cv.embed import load_default_model

        model = load_default_model()  # ranked as `sliplink eval` ranks ("as similar ranks")
        x, _, _, designs, _ = _embed(paths, model=model, jobs=2, templates=None)
        ranked = design_penalised(ranking_scores(x, _model_calibration(model)), designs)
    sets, cpu = [], []
    for k, p in enumerate(paths):
        image = load_image(p.read_bytes())
        t0 = time.process_time()
        sets.append(glyph_set(image))
        cpu.append(1000 * (time.process_time() - t0))
        if (k + 1) % 50 == 0:
            print(f"glyphs {k + 1}/{len(paths)}", file=sys.stderr)
    sim = score_matrix(sets)
    iu = np.triu_indices(len(sim), 1)
    vals, same = sim[iu], writers[iu[0]] == writers[iu[1]]
    ok = ~np.isnan(vals)
    pos, neg = vals[ok & same], vals[ok & ~same]
    report: dict = {
        "folder": str(args.folder),
        "images": len(paths),
        "writers": int(len(set(writers.tolist()))),
        "glyphs_per_image_median": float(np.median([len(s) for s in sets])),
        "no_glyphs": int(sum(len(s) == 0 for s in sets)),
        "glyph_cpu_ms_median": round(float(np.median(cpu)), 2),
        "glyph_score": _retrieval(sim, writers, kinds, templates),
        "same_writer_quantiles": {q: round(float(np.quantile(pos, q)), 4) for q in (0.1, 0.5, 0.9)},
        "different_writer_quantiles": {
            q: round(float(np.quantile(neg, q)), 4) for q in (0.5, 0.9, 0.99)
        },
        "auc": round(auc(pos, neg), 4),
    }
    if ranked is not None:
        z_r = (ranked - ranked[iu].mean()) / ranked[iu].std()
        g = np.where(np.isnan(sim), np.nanmean(vals), sim)
        z_g = (g - g[iu].mean()) / g[iu].std()
        report["ranked"] = _retrieval(ranked, writers, kinds, templates)
        for w in (float(v) for v in args.weights.split(",")):
            report[f"ranked_plus_glyphs_{w}"] = _retrieval(z_r + w * z_g, writers, kinds, templates)
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
