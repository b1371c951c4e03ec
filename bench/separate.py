"""Benchmark the slip preprocessing: speed, and print/handwriting separation quality.

Generates held-out slips (held-out fonts, all designs including the two never used in
fitting) with ink masks, then reports as JSON:

- ms per slip for ``load_image`` (decode) and ``preprocess`` on one core (OpenCV limited
  to one thread; wall and CPU time, median and p95);
- CPU ms per slip of the separation alone (``handwriting_mask``: work frame, line removal,
  component features, classifier, mapping back to full resolution), and of the classifier
  step on the work frame (``cv.separate.separate``);
- pixel precision/recall of handwriting (1 px tolerance, see ``cv.separate.pixel_scores``)
  and the fraction of printed pixels kept, without templates and with the blank designs
  registered, overall, for seen vs unseen designs and per design;
- on real UNIPEN crops (no form, held-out writers): fraction of ink kept; and the same
  writers' crops pasted on blank designs, at their own size and at a slip's handwriting size
  (0.4), handwriting pixel precision/recall.

Run: ``PYTHONPATH=. .venv/bin/python bench/separate.py [--writers 30] [--slips-per-writer 3]``
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.machine import reference  # noqa: E402
from cv import preprocess as P  # noqa: E402
from cv import register as R  # noqa: E402
from cv import separate as S  # noqa: E402

UNIPEN = REPO_ROOT.parent / "shared" / "data" / "unipen-dev"


def _pct(xs: list[float], q: float) -> float:
    return round(float(np.percentile(xs, q)), 2) if xs else float("nan")


def tally() -> dict[str, float]:
    """An empty pooled count of `cv.separate.pixel_scores` results (:func:`add_scores`)."""
    return {"tp": 0.0, "pred": 0.0, "hand": 0.0, "rec_tp": 0.0, "kept": 0.0, "print": 0.0}


def add_scores(acc: dict[str, float], sc: dict[str, float]) -> None:
    acc["tp"] += sc["tp"]
    acc["pred"] += sc["pred"]
    acc["hand"] += sc["hand"]
    acc["rec_tp"] += sc["recall"] * sc["hand"] if sc["hand"] else 0.0
    acc["kept"] += sc["print_kept"] * sc["print"] if sc["print"] else 0.0
    acc["print"] += sc["print"]


def tally_summary(acc: dict[str, float]) -> dict[str, float]:
    """Pixel precision, recall and print kept over everything added, pooled by pixels."""
    return {
        "precision": round(acc["tp"] / max(acc["pred"], 1.0), 4),
        "recall": round(acc["rec_tp"] / max(acc["hand"], 1.0), 4),
        "print_kept": round(acc["kept"] / max(acc["print"], 1.0), 4),
    }


def run(data: Path, templates_dir: Path, *, unipen_limit: int) -> dict:
    from sample_slips.splits import TEMPLATES_HELDOUT, unipen_split

    cv2.setNumThreads(1)
    with (data / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    templates = [
        R.prepare_template(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE))
        for p in sorted(templates_dir.glob("*.png"))
    ]
    t_load, t_pre, c_pre, t_pre_tmpl = [], [], [], []
    plain, with_t = tally(), tally()
    seen, unseen = tally(), tally()
    per_design: dict[str, dict[str, float]] = {}
    c_sep: list[float] = []
    c_sep_work: list[float] = []
    flagged = 0
    for r in rows:
        stem = Path(r["image"]).stem
        raw = (data / r["image"]).read_bytes()
        t0 = time.perf_counter()
        img = P.load_image(raw)
        t1 = time.perf_counter()
        c1 = time.process_time()
        prep = P.preprocess(img)
        c2 = time.process_time()
        t2 = time.perf_counter()
        P.preprocess(img, templates=templates)
        t3 = time.perf_counter()
        t_load.append((t1 - t0) * 1000)
        t_pre.append((t2 - t1) * 1000)
        c_pre.append((c2 - c1) * 1000)
        t_pre_tmpl.append((t3 - t2) * 1000)
        flagged += not prep.quality.ok
        hm = cv2.imread(str(data / "masks" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE) > 0
        pm = cv2.imread(str(data / "masks" / f"{stem}_print.png"), cv2.IMREAD_GRAYSCALE) > 0
        c3 = time.process_time()
        mask = P.handwriting_mask(img)
        c4 = time.process_time()
        wf = P.work_frame(img)
        c5 = time.process_time()
        S.separate(wf.flat, wf.ink)
        c_sep_work.append((time.process_time() - c5) * 1000)
        c_sep.append((c4 - c3) * 1000)
        sc = S.pixel_scores(mask, hm, pm)
        add_scores(plain, sc)
        add_scores(per_design.setdefault(r["template"], tally()), sc)
        add_scores(unseen if r["template"] in TEMPLATES_HELDOUT else seen, sc)
        add_scores(with_t, S.pixel_scores(P.handwriting_mask(img, templates=templates), hm, pm))
    out: dict = {
        "slips": len(rows),
        "flagged_slips": flagged,
        "ms_load": {"median": _pct(t_load, 50), "p95": _pct(t_load, 95)},
        "ms_preprocess": {"median": _pct(t_pre, 50), "p95": _pct(t_pre, 95)},
        # CPU time of this process: robust when other jobs share the cores.
        "cpu_ms_preprocess": {"median": _pct(c_pre, 50), "p95": _pct(c_pre, 95)},
        "cpu_ms_separation": {"median": _pct(c_sep, 50), "p95": _pct(c_sep, 95)},
        # The classifier step alone on the work frame (lines, components, features, MLP).
        "cpu_ms_separate_work_frame": {
            "median": _pct(c_sep_work, 50),
            "p95": _pct(c_sep_work, 95),
        },
        "ms_preprocess_with_templates": {
            "median": _pct(t_pre_tmpl, 50),
            "p95": _pct(t_pre_tmpl, 95),
        },
        "separation_no_templates": tally_summary(plain),
        "separation_seen_designs": tally_summary(seen),
        "separation_unseen_designs": tally_summary(unseen),
        "separation_with_templates": tally_summary(with_t),
        "separation_per_design": {
            name: {**tally_summary(acc), "unseen": name in TEMPLATES_HELDOUT}
            for name, acc in sorted(per_design.items())
        },
    }
    if UNIPEN.exists() and unipen_limit > 0:
        with (UNIPEN / "labels.csv").open() as fh:
            urows = list(csv.DictReader(fh))
        _, held = unipen_split({u["writer"] for u in urows})
        kept, ok, t_u = [], 0, []
        chosen = [u for u in urows if u["writer"] in held][:unipen_limit]
        for u in chosen:
            img = cv2.imread(str(UNIPEN / "images" / u["image"]), cv2.IMREAD_GRAYSCALE)
            ink = P.binarise(P.flatten_background(img))
            m = P.handwriting_mask(img)
            kept.append(float((m & ink).sum() / max(int(ink.sum()), 1)))
            t0 = time.perf_counter()
            ok += P.preprocess(img).quality.ok
            t_u.append((time.perf_counter() - t0) * 1000)
        # Real hands on slips: two held-out-writer crops pasted (darker ink wins) onto a
        # blank design scan; ground truth = the crops' own ink.  At the crops' own size
        # (their capitals 100+ px tall, 2-3x a slip's handwriting) and at 0.4 of it, the
        # size of the handwriting on a slip.
        blanks = [
            cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted(templates_dir.glob("*.png"))
        ]
        for key, scale in (
            ("unipen_on_blank_slips", 1.0),
            ("unipen_on_blank_slips_slip_size", 0.4),
        ):
            rng = np.random.default_rng(7)
            pasted = tally()
            for j in range(0, min(len(chosen), 120) - 1, 2):
                page = blanks[(j // 2) % len(blanks)]
                printed = P.binarise(P.flatten_background(page))
                crops = []
                for u in chosen[j : j + 2]:
                    crop = cv2.imread(str(UNIPEN / "images" / u["image"]), cv2.IMREAD_GRAYSCALE)
                    if scale != 1.0:
                        crop = cv2.resize(
                            crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA
                        )
                    crops.append(crop)
                blank = np.zeros(page.shape, np.uint8)
                page, hand, only_print = S.paste_crops(
                    page, blank, printed.astype(np.uint8) * 255, crops, rng
                )
                add_scores(
                    pasted, S.pixel_scores(P.handwriting_mask(page), hand > 0, only_print > 0)
                )
            out[key] = tally_summary(pasted)
        out["unipen_crops"] = {
            "crops": len(chosen),
            "ink_kept_median": round(float(np.median(kept)), 4),
            "ink_kept_p05": round(float(np.percentile(kept, 5)), 4),
            "quality_ok": ok,
            "ms_preprocess_median": _pct(t_u, 50),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    from sample_slips.generate import generate, template_images

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--writers", type=int, default=30)
    ap.add_argument("--slips-per-writer", type=int, default=3)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--data-dir", type=Path, default=None, help="existing held-out set")
    ap.add_argument("--unipen", type=int, default=150, help="UNIPEN crops to check (0 = none)")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data_dir
        if data is None:
            data = Path(tmp) / "heldout"
            generate(
                data,
                writers=args.writers,
                slips_per_writer=args.slips_per_writer,
                seed=args.seed,
                split="heldout",
                masks=True,
            )
        tdir = Path(tmp) / "templates"
        template_images(tdir, seed=args.seed + 1)
        result = run(Path(data), tdir, unipen_limit=args.unipen)
        result["machine"] = reference()
        report = json.dumps(result, indent=2)
    print(report)
    if args.out is not None:
        args.out.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
