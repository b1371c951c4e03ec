"""Benchmark the till stamp's clearing (`cv.stamp`): how often it is found, what it leaves.

Renders planned slips in memory (no files) with their ink masks, and the same slips without
their printed form (``render_slip(blank_design=True)``: the print mask is then the stamp's
alone), then reports as JSON, with the stamp cleared and without (``cv.preprocess.STAMPS``):

- of the ink kept as handwriting (``cv.preprocess.handwriting_mask``), the shares that are
  handwriting, stamp and the form's print (each within 1 px of its mask), and the share of
  handwriting found (recall, within 1 px);
- slips whose kept stamp ink exceeds 5 % of their kept handwriting;
- slips with a stamp found (``cv.stamp.stamp_mask``, a barcode on either axis) among those with a
  stamp and among those without one (false finds);
- CPU ms per slip of ``cv.stamp.stamp_mask`` on the work frame (median, p95).

Run: ``PYTHONPATH=. .venv/bin/python bench/stamp.py [--writers 60] [--slips 120] [--json F]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import cv.preprocess as P  # noqa: E402
from cv.stamp import stamp_mask  # noqa: E402
from sample_slips.generate import render_slip  # noqa: E402
from sample_slips.plan import make_plan  # noqa: E402


def _near(mask: np.ndarray) -> np.ndarray:
    return cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=60)
    parser.add_argument("--slips-per-writer", type=int, default=6)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--split", default="heldout")
    parser.add_argument("--slips", type=int, default=120, help="the plan's first N slips")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    cv2.setNumThreads(1)

    plan = make_plan(
        writers=args.writers,
        slips_per_writer=args.slips_per_writer,
        seed=args.seed,
        split=args.split,
    )
    sums = {on: dict(kept=0, hand=0, stamp=0, found_hand=0, true_hand=0) for on in (0, 1)}
    leaky = {0: 0, 1: 0}
    found = {True: [0, 0], False: [0, 0]}
    cpu_ms = []
    for p in plan.slips[: args.slips]:
        image, hand, printed = render_slip(p, seed=args.seed)
        hand = hand > 0
        stamp = np.zeros_like(hand)
        if p.stamp:
            stamp = render_slip(p, seed=args.seed, blank_design=True)[2] > 0
        near_hand, near_stamp = _near(hand), _near(stamp)
        for on in (0, 1):
            P.STAMPS = bool(on)
            kept = P.handwriting_mask(image)
            k_hand = int((kept & near_hand).sum())
            k_stamp = int((kept & ~near_hand & near_stamp).sum())
            s = sums[on]
            s["kept"] += int(kept.sum())
            s["hand"] += k_hand
            s["stamp"] += k_stamp
            s["found_hand"] += int((hand & _near(kept)).sum())
            s["true_hand"] += int(hand.sum())
            leaky[on] += int(k_stamp > 0.05 * max(k_hand, 1))
        P.STAMPS = True
        ink = P.work_frame(image, deskew=True, work_pixels=P.WORK_PIXELS).ink
        t0 = time.process_time()
        cleared = stamp_mask(ink)
        cpu_ms.append(1000.0 * (time.process_time() - t0))
        found[bool(p.stamp)][0] += int(cleared.any())  # a barcode found on either axis
        found[bool(p.stamp)][1] += 1

    def shares(s: dict) -> dict:
        kept = max(s["kept"], 1)
        return {
            "handwriting": s["hand"] / kept,
            "stamp": s["stamp"] / kept,
            "print": (s["kept"] - s["hand"] - s["stamp"]) / kept,
            "handwriting_recall": s["found_hand"] / max(s["true_hand"], 1),
        }

    out = {
        "slips": min(args.slips, len(plan.slips)),
        "plan": {"writers": args.writers, "seed": args.seed, "split": args.split},
        "kept_without_clearing": shares(sums[0]),
        "kept_with_clearing": shares(sums[1]),
        "slips_stamp_over_5pct_without": leaky[0],
        "slips_stamp_over_5pct_with": leaky[1],
        "stamped_found": found[True][0],
        "stamped": found[True][1],
        "unstamped_found": found[False][0],
        "unstamped": found[False][1],
        "stamp_mask_cpu_ms_median": float(np.median(cpu_ms)),
        "stamp_mask_cpu_ms_p95": float(np.percentile(cpu_ms, 95)),
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
