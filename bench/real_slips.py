"""Real handwriting on slips: writer retrieval when real hands are written on printed forms.

The generated slips' handwriting is drawn from fonts; real customers' is not, and the
print/handwriting separator and the page's scale normalisation decide what is left of it.
This benchmark writes each real handwriting crop of ``../shared/data/unipen-dev/`` (held-out
writers by default) into a field of a slip design, at a slip's handwriting size, through the
generator's scanner model (`sample_slips.scan.scan`: paper tone, uneven light, noise, blur,
a small turn, carbon copies, folds; a till stamp on 80 % of slips), JPEG-encodes it, and
runs ``sliplink eval`` on three sets built from the same crops:

- ``plain``: the crops as they are (``sliplink eval`` on the UNIPEN images themselves);
- ``blank``: each crop resized as on a slip, on a page without print or stamp (what slip
  size and the scan cost, separation aside);
- ``slips``: the same on a slip design with its print and, on 80 %, a till stamp (what the
  separator costs on top).

The crops are resized by ``--scale`` (0.4: UNIPEN's capitals are 100+ px tall, a slip's
handwriting ~40 px) and their strokes thickened back to a biro's width on a slip (UNIPEN's pen
draws ~6 px, generated handwriting on slips ~3.7 px; resizing alone would leave ~2.4 px).

Run: ``PYTHONPATH=. .venv/bin/python bench/real_slips.py [--split heldout|fit] [--out DIR]
[--jobs 2] [--json F]``.  Prints the three sets' retrieval and clustering figures as JSON.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from cv.preprocess import flatten_background, handwriting_mask  # noqa: E402
from cv.separate import pixel_scores  # noqa: E402
from sample_slips.scan import paste_max, rotate_bound, scan, stamp  # noqa: E402
from sample_slips.splits import templates_for, unipen_split  # noqa: E402
from sample_slips.templates import design  # noqa: E402

UNIPEN = REPO_ROOT.parent / "shared" / "data" / "unipen-dev"
SLIP_STROKE_WIDTH = 3.7  # median stroke width of generated handwriting on a slip (px)
UNIPEN_STROKE_WIDTH = 6.0  # median stroke width of the UNIPEN crops (px)
STAMP_RATE = 0.8


def _unit(key: str) -> float:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def hand_layer(crop: np.ndarray, scale: float) -> np.ndarray:
    """The crop's ink as handwriting coverage (255 = ink) at ``scale``, strokes thickened
    back to about a biro's width on a slip."""
    cov = cv2.bitwise_not(flatten_background(crop))
    cov[cov < 40] = 0  # paper grain left by the flattening is not ink
    small = cv2.resize(cov, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    grow = int(round(SLIP_STROKE_WIDTH - UNIPEN_STROKE_WIDTH * scale))
    if grow > 0:
        small = cv2.dilate(small, np.ones((grow + 1, grow + 1), np.uint8))
    return small


def _place(hand: np.ndarray, box: tuple[int, int, int, int], rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner putting ``hand`` in ``box``: left-aligned with a little margin, its
    lower part on the box's lower part (people write on the box's floor), within the page."""
    x0, y0, x1, y1 = box
    h, w = hand.shape
    x = x0 + int(rng.uniform(0.02, 0.15) * max(1, (x1 - x0) - w)) if w < x1 - x0 else x0
    y = y1 - h + int(rng.normal(0, 0.08) * (y1 - y0)) - int(0.1 * (y1 - y0))
    return x, max(0, y)


def render(
    crop: np.ndarray,
    *,
    template: str,
    scale: float,
    hand_ink: float,
    rng: np.random.Generator,
    printed: bool,
) -> tuple[bytes, np.ndarray, np.ndarray]:
    """One JPEG slip with ``crop`` written into a field of design ``template``, and its
    handwriting and print masks (255 = ink)."""
    tmpl, lay = design(template)
    hand_small = hand_layer(crop, scale)
    hand = np.zeros((lay.height, lay.width), np.uint8)
    # The widest fields first: a selection or stake box, where a customer writes a line.
    fields = sorted(lay.fields.values(), key=lambda b: b[2] - b[0], reverse=True)
    fits = [b for b in fields if b[2] - b[0] >= hand_small.shape[1]]
    box = fits[int(rng.integers(0, min(3, len(fits))))] if fits else fields[0]
    if hand_small.shape[1] > lay.width - 20:  # wider than the page: shrink to fit
        f = (lay.width - 20) / hand_small.shape[1]
        hand_small = cv2.resize(hand_small, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    x, y = _place(hand_small, box, rng)
    paste_max(hand, hand_small, x, y)
    print_cov = tmpl.copy() if printed else np.zeros_like(tmpl)
    ink = float(np.clip(lay.ink + rng.normal(0, 0.04), 0.4, 1.0))
    print_dark = cv2.convertScaleAbs(print_cov, alpha=ink)
    if printed and rng.random() < STAMP_RATE:
        lines = [
            f"SHOP S{rng.integers(1, 40):02d}  TILL {rng.integers(1, 6)}",
            f"{rng.integers(1, 29):02d}/11/26 {rng.integers(9, 22):02d}:{rng.integers(0, 60):02d}:00",
            f"BET ID {rng.integers(10**7, 10**8)}",
            f"STAKE GBP {rng.integers(1, 60)}.00",
        ]
        st = stamp(lines, lines[2], rng)
        st = rotate_bound(st, 90.0 if rng.random() < 0.12 else float(rng.normal(0, 3.0)))
        sh, sw = st.shape
        sx = int(rng.uniform(lay.width * 0.15, max(lay.width * 0.15 + 1, lay.width - sw * 0.7)))
        sy = int(rng.uniform(lay.height * 0.2, max(lay.height * 0.2 + 1, lay.height - sh * 0.6)))
        paste_max(print_cov, st, sx, sy)
        paste_max(print_dark, cv2.convertScaleAbs(st, alpha=rng.uniform(0.7, 0.95)), sx, sy)
    image, hand_mask, print_mask = scan(
        hand=hand, hand_ink=hand_ink, print_cov=print_cov, print_dark=print_dark, rng=rng
    )
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(50, 86))])
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 greyscale image
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes(), hand_mask, print_mask


def build(rows: list[dict], out: Path, *, scale: float, printed: bool, seed: int) -> Path:
    """Write one slip per crop row into ``out`` with its ``labels.csv``; returns the labels."""
    out.mkdir(parents=True, exist_ok=True)
    designs = templates_for("heldout")
    labels = []
    for i, r in enumerate(rows):
        rng = np.random.default_rng([seed, i])
        crop = cv2.imread(str(UNIPEN / "images" / r["image"]), cv2.IMREAD_GRAYSCALE)
        template = designs[int(rng.integers(0, len(designs)))]
        # a writer's pen: the same darkness on all their slips, give or take
        hand_ink = float(np.clip(0.6 + 0.4 * _unit("ink:" + r["writer"]) + rng.normal(0, 0.04), 0.4, 1.0))
        data, hand_mask, print_mask = render(
            crop, template=template, scale=scale, hand_ink=hand_ink, rng=rng, printed=printed
        )
        name = f"real_{i:05d}.jpg"
        (out / name).write_bytes(data)
        (out / "masks").mkdir(exist_ok=True)
        cv2.imwrite(str(out / "masks" / f"real_{i:05d}.png"), hand_mask)
        cv2.imwrite(str(out / "masks" / f"real_{i:05d}_print.png"), print_mask)
        labels.append({"image": name, "writer": r["writer"], "kind": r["kind"],
                       "template": template if printed else "none"})
    path = out / "labels.csv"
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(labels[0]))
        w.writeheader()
        w.writerows(labels)
    return path


def separation(folder: Path, labels: Path) -> dict:
    """Pixel precision / recall of the kept handwriting (`cv.preprocess.handwriting_mask`)
    against the rendered masks, pooled over the set (as `bench/separate.py` scores)."""
    tp = found = pred = hand = kept_print = n_print = 0
    with labels.open() as fh:
        names = [r["image"] for r in csv.DictReader(fh)]
    for name in names:
        image = cv2.imread(str(folder / name), cv2.IMREAD_GRAYSCALE)
        stem = Path(name).stem
        hm = cv2.imread(str(folder / "masks" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE) > 0
        pm = cv2.imread(str(folder / "masks" / f"{stem}_print.png"), cv2.IMREAD_GRAYSCALE) > 0
        sc = pixel_scores(handwriting_mask(image), hm, pm)
        tp += sc["tp"]
        found += sc["recall"] * sc["hand"] if sc["hand"] else 0
        pred += sc["pred"]
        hand += sc["hand"]
        kept_print += sc["print_kept"] * sc["print"] if sc["print"] else 0
        n_print += sc["print"]
    return {
        "precision": round(tp / max(pred, 1), 4),
        "recall": round(found / max(hand, 1), 4),
        "print_kept": round(kept_print / max(n_print, 1), 5),
    }


def evaluate(images: Path, labels: Path, *, jobs: int, model: str | None) -> dict:
    """``sliplink eval``'s JSON report of one set."""
    with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
        cmd = [sys.executable, "-m", "cli.main", "eval", str(images), "--labels", str(labels),
               "--jobs", str(jobs), "--json", tmp.name]
        if model:
            cmd += ["--model", model]
        subprocess.run(cmd, check=True, cwd=REPO_ROOT, stdout=subprocess.DEVNULL)
        return json.loads(Path(tmp.name).read_text())


SUMMARY_KEYS = (
    "n", "skipped", "no_handwriting", "map", "top1", "top5", "norm_map", "norm_top1",
    "norm_top5", "by_kind", "pairwise_precision", "pairwise_recall", "pairwise_f1", "ari",
    "best_pairwise_f1", "live_precision", "live_recall",
)


def _summary(report: dict) -> dict:
    return {k: report[k] for k in SUMMARY_KEYS if k in report}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("heldout", "fit"), default="heldout",
                    help="which UNIPEN writers (fit: for choosing between variants)")
    ap.add_argument("--scale", type=float, default=0.4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="keep the sets here (default: a temporary folder)")
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
        result = {"split": args.split, "crops": len(rows), "scale": args.scale, "seed": args.seed}
        sets = {"plain": (UNIPEN / "images", plain_labels)}
        for name, printed in (("blank", False), ("slips", True)):
            labels = build(rows, root / name, scale=args.scale, printed=printed, seed=args.seed)
            sets[name] = (root / name, labels)
        for name, (images, labels) in sets.items():
            print(f"evaluating {name}", file=sys.stderr)
            result[name] = _summary(evaluate(images, labels, jobs=args.jobs, model=args.model))
            if name != "plain":
                result[name]["separation"] = separation(images, labels)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
