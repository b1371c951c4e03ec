"""Learned writer family (cv.features.learned) on writers never used in training, alone and
fused with the shipped hand-crafted model.

    PYTHONPATH=. .venv/bin/python bench/learned.py [--model cv/models/learned.npz] \
        [--json bench/learned.json] [--work /tmp/sliplink-bench] [--jobs 2]

Same held-out sets and protocol as bench/accuracy.py: generated slips of 60 held-out writers
x 6 (split=heldout, seed 12: held-out fonts and designs) and the held-out half of the UNIPEN
writers (:func:`sample_slips.splits.unipen_split`), real preprocessing on the full image (no
ground-truth masks), leave-one-out retrieval (:func:`cv.metrics.retrieval_scores`).

Rows: the hand-crafted default model (cv/models/default.npz) alone; the learned descriptor
alone; the two fused at score level (cosine of the default model + cosine of the learned
descriptor, equal weights fixed beforehand: the same as concatenating the two unit vectors).
With ``--joint``, also the two vectors concatenated and whitened (centring, PCA whitening,
WCCN) with a map fitted on the fit writers only (generated fit set + UNIPEN fit half).
Speed: the learned part alone, ms per slip on one thread, on the prepared ink.
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
sys.path.insert(0, str(REPO_ROOT))

from cv.embed import extract_files, load_default_model  # noqa: E402
from cv.features.learned import (  # noqa: E402
    DEFAULT_LEARNED_PATH,
    learned_descriptor,
    load_learned_model,
)
from cv.learned_train import load_inks, prepared_inks, save_inks  # noqa: E402
from cv.metrics import retrieval_scores, top1_attribute_rate  # noqa: E402

UNIPEN = REPO_ROOT.parent / "shared" / "data" / "unipen-dev"


def _rows(labels: Path) -> list[dict[str, str]]:
    with labels.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _score(sim: np.ndarray, writers: np.ndarray, templates: np.ndarray | None) -> dict:
    r = retrieval_scores(sim, writers)
    if templates is not None:
        t = top1_attribute_rate(sim, templates)
        r["template_rate"], r["template_chance"] = t["rate"], t["chance"]
    return r


def _prep_hash() -> str:
    """Hash of the code and models features depend on: a stale cache is never used."""
    import hashlib

    h = hashlib.sha256()
    for rel in ("cv/preprocess.py", "cv/separate.py", "cv/register.py", "cv/imageio.py"):
        h.update((REPO_ROOT / rel).read_bytes())
    for p in sorted((REPO_ROOT / "cv" / "models").glob("separator*")):
        h.update(p.read_bytes())
    for p in sorted((REPO_ROOT / "cv" / "features").glob("*.py")):
        if p.name != "learned.py":
            h.update(p.read_bytes())
    return h.hexdigest()[:10]


def _cached_inks(name: str, paths: list[Path], work: Path, jobs: int) -> list[np.ndarray]:
    cache = work / f"learned_ink_{name}_{_prep_hash()}.npz"
    if cache.is_file():
        inks = load_inks(cache)
        if len(inks) == len(paths):
            return inks
    inks = prepared_inks(paths, jobs=jobs)
    save_inks(cache, inks)
    return inks


def _embed(name, paths, work, jobs, default, model, times=None, cpu=None):
    """(hand-crafted default embedding, learned descriptor) of each image."""
    cache = work / f"learned_zhand_{name}_{_prep_hash()}_{default.version}.npy"
    if cache.is_file() and len(np.load(cache)) == len(paths):
        z_hand = np.load(cache)
    else:
        raws, errors = extract_files(paths, model=default, jobs=jobs)
        if any(errors):
            raise SystemExit(f"unreadable benchmark images: {[e for e in errors if e][:3]}")
        z_hand = default.transform_raw(raws)  # type: ignore[arg-type]
        np.save(cache, z_hand)
    z_learn = []
    for ink in _cached_inks(name, paths, work, jobs):
        t1, c1 = time.perf_counter(), time.process_time()
        z_learn.append(learned_descriptor(ink, model))
        if times is not None and cpu is not None:
            times.append(time.perf_counter() - t1)
            cpu.append(time.process_time() - c1)
    return z_hand, np.stack(z_learn)


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", type=Path, default=DEFAULT_LEARNED_PATH)
    ap.add_argument("--work", type=Path, default=Path("/tmp/sliplink-bench"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--joint", action="store_true", help="also fit a joint whitening on the fit writers"
    )
    args = ap.parse_args()
    import cv2
    from threadpoolctl import threadpool_limits

    from sample_slips.generate import generate
    from sample_slips.splits import unipen_split

    threadpool_limits(1)
    cv2.setNumThreads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    ghel = args.work / "gen_heldout"
    if not (ghel / "labels.csv").is_file():
        generate(ghel, writers=60, slips_per_writer=6, seed=12, split="heldout", jobs=args.jobs)
    g_rows = _rows(ghel / "labels.csv")
    u_all = _rows(UNIPEN / "labels.csv")
    _, u_hel = unipen_split({r["writer"] for r in u_all})
    u_rows = [r for r in u_all if r["writer"] in u_hel]
    sets = {
        "generated": (
            [ghel / r["image"] for r in g_rows],
            np.array([r["writer"] for r in g_rows]),
            np.array([r["template"] for r in g_rows]),
        ),
        "unipen": (
            [UNIPEN / "images" / r["image"] for r in u_rows],
            np.array([r["writer"] for r in u_rows]),
            None,
        ),
    }
    model = load_learned_model(args.model)
    default = load_default_model()
    results: dict[str, dict] = {}
    times: list[float] = []
    cpu: list[float] = []  # CPU time: less disturbed than wall time on a shared machine
    joint = None
    if args.joint:
        # concatenation of the two unit vectors, then centring + PCA whitening + WCCN fitted
        # on the FIT writers (generated fit set + UNIPEN fit half), never on held-out ones
        from cv.learned_train import _whitening

        gfit = args.work / "gen_fit"
        if not (gfit / "labels.csv").is_file():
            generate(gfit, writers=200, slips_per_writer=6, seed=11, split="fit", jobs=args.jobs)
        f_rows = [r for r in _rows(gfit / "labels.csv") if r.get("split", "fit") == "fit"]
        u_fit = [r for r in u_all if r["writer"] not in u_hel]
        zh1, zl1 = _embed(
            "gen_fit", [gfit / r["image"] for r in f_rows], args.work, args.jobs, default, model
        )
        zh2, zl2 = _embed(
            "unipen_fit",
            [UNIPEN / "images" / r["image"] for r in u_fit],
            args.work,
            args.jobs,
            default,
            model,
        )
        x = np.vstack([np.hstack([zh1, zl1]), np.hstack([zh2, zl2])]).astype(np.float64)
        w = np.array([f"g:{r['writer']}" for r in f_rows] + [f"u:{r['writer']}" for r in u_fit])
        joint = _whitening(x, w, whiten=0.5, shrinkage=0.3)
    for name, (paths, writers, templates) in sets.items():
        t0 = time.perf_counter()
        z_hand, z_l = _embed(name, paths, args.work, args.jobs, default, model, times, cpu)
        s_hand, s_learn = z_hand @ z_hand.T, z_l @ z_l.T
        results[name] = {
            "images": len(paths),
            "writers": len(set(writers.tolist())),
            "hand-crafted default": _score(s_hand, writers, templates),
            "learned": _score(s_learn, writers, templates),
            "fused (score sum)": _score(s_hand + s_learn, writers, templates),
        }
        if joint is not None:
            zj = _l2((np.hstack([z_hand, z_l]) - joint[0]) @ joint[1])
            results[name]["fused (concat + WCCN on fit writers)"] = _score(
                zj @ zj.T, writers, templates
            )
        print(f"{name}: {len(paths)} images in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        for method, r in results[name].items():
            if isinstance(r, dict):
                extra = f" template {r['template_rate']:.2f}" if "template_rate" in r else ""
                print(
                    f"  {method:38s} mAP {r['map']:.3f} top-1 {r['top1']:.3f}"
                    f" top-5 {r['top5']:.3f}{extra}"
                )
    ms = np.array(times) * 1000
    out = {
        "model": model.version,
        "model_file": str(args.model.relative_to(REPO_ROOT))
        if args.model.is_relative_to(REPO_ROOT)
        else str(args.model),
        "model_bytes": args.model.stat().st_size,
        "default_model": default.version,
        "training": model.header.get("training", {}),
        "learned_ms_per_slip": {
            "median": float(np.median(ms)),
            "p95": float(np.percentile(ms, 95)),
            "cpu_median": float(np.median(cpu) * 1000),
            "cpu_p95": float(np.percentile(cpu, 95) * 1000),
        },
        "results": results,
    }
    t = out["learned_ms_per_slip"]
    print(
        "learned descriptor, ms per slip on one thread: wall median"
        f" {t['median']:.1f} / p95 {t['p95']:.1f}, CPU median {t['cpu_median']:.1f}"
        f" / p95 {t['cpu_p95']:.1f}"
    )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
