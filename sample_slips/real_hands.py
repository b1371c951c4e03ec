"""Real handwriting written on slips: crops of real handwriting drawn into a design's fields.

The generated slips' handwriting comes from fonts; customers' does not.  This module writes
real handwriting crops (UNIPEN's, ``../shared/data/unipen-dev/``) into the fields of a slip
design at a slip's handwriting size and sends the page through the generator's scanner model
(`sample_slips.scan.scan`), with a till stamp on most slips, as ``generate`` does for
generated handwriting.  Sets are written in the generator's layout (``labels.csv``, JPEG
slips, ``masks/NAME.png`` and ``masks/NAME_print.png``), so everything that reads a
generated set reads these: ``sliplink eval``, ``bench/real_slips.py``, the separator's
training (``cv.separate``).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from sample_slips.scan import paste_max, rotate_bound, scan, stamp
from sample_slips.templates import design, random_design_name
from sample_slips.writers import _unit as unit_interval

UNIPEN_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "unipen-dev"
# Median stroke widths (px): generated handwriting on a slip, and UNIPEN's constant-width pen.
SLIP_STROKE_WIDTH = 3.7
UNIPEN_STROKE_WIDTH = 6.0
# UNIPEN's capitals are ~76 px tall (median), a generated writer's 24-40 px: 0.4 brings them
# to a slip's handwriting size.
SLIP_SCALE = 0.4
# ... but no crop's letters come out smaller than this (median letter height, px at the
# reference ~150 dpi: 2.3 mm).  UNIPEN's words vary in size more than slips' handwriting does:
# at 0.4, 12 % of its crops (nearly all words) had smaller letters, a twentieth of the words
# 10 px and less, and the smallest (a 20-px-wide "word") were specks no separator could keep.
MIN_LETTER_HEIGHT = 14.0
STAMP_RATE = 0.8  # as the generator's slips


def hand_layer(crop: np.ndarray, scale: float) -> np.ndarray:
    """A crop's ink as handwriting coverage (255 = ink) resized by ``scale`` (raised so its
    letters reach :data:`MIN_LETTER_HEIGHT`), its strokes thickened back to about a biro's
    width on a slip (resizing alone thins UNIPEN's 6 px pen to 2.4 px at 0.4)."""
    from cv.features.style import letter_height
    from cv.preprocess import binarise, flatten_background

    flat = flatten_background(crop)
    height = letter_height(binarise(flat).view(np.uint8))
    if np.isfinite(height) and height * scale < MIN_LETTER_HEIGHT:
        scale = MIN_LETTER_HEIGHT / height
    cov = cv2.bitwise_not(flat)
    cov[cov < 40] = 0  # paper grain left by the flattening is not ink
    small = cv2.resize(cov, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    grow = int(round(SLIP_STROKE_WIDTH - UNIPEN_STROKE_WIDTH * scale))
    if grow > 0:
        small = cv2.dilate(small, np.ones((grow + 1, grow + 1), np.uint8))
    return small


def _place(hand: np.ndarray, box: Sequence[int], rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner putting ``hand`` in ``box``: left-aligned with a little margin, resting
    on the box's lower part, as people write in a box."""
    x0, y0, x1, y1 = box
    h, w = hand.shape
    x = x0 + int(rng.uniform(0.02, 0.15) * ((x1 - x0) - w)) if w < x1 - x0 else x0
    y = y1 - h + int(rng.normal(0, 0.08) * (y1 - y0)) - int(0.1 * (y1 - y0))
    return x, max(0, y)


def _till_stamp(rng: np.random.Generator) -> np.ndarray:
    lines = [
        f"SHOP S{rng.integers(1, 40):02d}  TILL {rng.integers(1, 6)}",
        f"{rng.integers(1, 29):02d}/11/26 {rng.integers(9, 22):02d}:{rng.integers(0, 60):02d}:00",
        f"BET ID {rng.integers(10**7, 10**8)}",
        f"STAKE GBP {rng.integers(1, 60)}.00",
    ]
    st = stamp(lines, lines[2], rng)
    return rotate_bound(st, 90.0 if rng.random() < 0.12 else float(rng.normal(0, 3.0)))


def render_real_slip(
    crops: Sequence[np.ndarray],
    *,
    template: str,
    scale: float,
    hand_ink: float,
    rng: np.random.Generator,
    printed: bool = True,
) -> tuple[bytes, np.ndarray, np.ndarray]:
    """A JPEG slip with each crop written into its own field of design ``template`` (the
    widest fields first, in random order), and its handwriting and print masks (255 = ink).

    ``printed=False`` leaves the page without print and stamp (the same writing and scan).
    """
    tmpl, lay = design(template)
    hand = np.zeros((lay.height, lay.width), np.uint8)
    fields = sorted(lay.fields.values(), key=lambda b: b[2] - b[0], reverse=True)
    free = list(fields)
    for crop in crops:
        small = hand_layer(crop, scale)
        if small.shape[1] > lay.width - 20:  # wider than the page: shrink to fit
            f = (lay.width - 20) / small.shape[1]
            small = cv2.resize(small, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        fits = [b for b in free if b[2] - b[0] >= small.shape[1]] or free or fields
        box = fits[int(rng.integers(0, min(3, len(fits))))]
        if box in free:
            free.remove(box)
        x, y = _place(small, box, rng)
        paste_max(hand, small, x, y)
    print_cov = tmpl.copy() if printed else np.zeros_like(tmpl)
    ink = float(np.clip(lay.ink + rng.normal(0, 0.04), 0.4, 1.0))
    print_dark = cv2.convertScaleAbs(print_cov, alpha=ink)
    if printed and rng.random() < STAMP_RATE:
        st = _till_stamp(rng)
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


def write_real_set(
    slips: Sequence[Sequence[dict]],
    out: Path,
    *,
    designs: Sequence[str],
    random_designs: float = 0.0,
    scale: float | tuple[float, float] = SLIP_SCALE,
    printed: bool = True,
    seed: int = 0,
    unipen_dir: Path = UNIPEN_DIR,
) -> Path:
    """Write one slip per entry of ``slips`` (the UNIPEN labels rows of its crops, one
    writer's) into ``out`` in the generator's layout; returns ``out / "labels.csv"``.

    ``designs`` are drawn at random, or with probability ``random_designs`` a procedurally
    randomised design (fit sets only).  ``scale`` is one factor, or a range drawn per writer
    (a writer keeps one size on all their slips).  A writer's pen darkness is their own,
    give or take.
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    labels = []
    for i, rows in enumerate(slips):
        rng = np.random.default_rng([seed, 90210, i])
        writer = rows[0]["writer"]
        if random_designs and rng.random() < random_designs:
            template = random_design_name(int(rng.integers(1 << 31)))
        else:
            template = str(designs[int(rng.integers(0, len(designs)))])
        lo, hi = (scale, scale) if isinstance(scale, int | float) else scale
        f = lo + (hi - lo) * unit_interval(f"scale:{seed}:{writer}")
        # the shop's pen, not the writer's: customers write with whatever pen is at the counter
        hand_ink = float(rng.uniform(0.6, 1.0))
        crops = [
            cv2.imread(str(unipen_dir / "images" / r["image"]), cv2.IMREAD_GRAYSCALE) for r in rows
        ]
        data, hand_mask, print_mask = render_real_slip(
            crops, template=template, scale=f, hand_ink=hand_ink, rng=rng, printed=printed
        )
        name = f"real_{i:05d}.jpg"
        (out / name).write_bytes(data)
        cv2.imwrite(str(out / "masks" / f"real_{i:05d}.png"), hand_mask)
        cv2.imwrite(str(out / "masks" / f"real_{i:05d}_print.png"), print_mask)
        kinds = sorted({r["kind"] for r in rows})
        labels.append(
            {
                "image": name,
                "writer": writer,
                "kind": "+".join(kinds),
                "template": template if printed else "none",
                "text": " / ".join(r["text"] for r in rows),
            }
        )
    path = out / "labels.csv"
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(labels[0]))
        w.writeheader()
        w.writerows(labels)
    return path


def by_writer_slips(rows: Sequence[dict], per_slip: int) -> list[list[dict]]:
    """Each writer's rows in chunks of ``per_slip`` (a last short chunk joins the one before)."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["writer"], []).append(r)
    out: list[list[dict]] = []
    for rs in groups.values():
        chunks = [list(rs[k : k + per_slip]) for k in range(0, len(rs), per_slip)]
        if len(chunks) > 1 and len(chunks[-1]) < per_slip:
            last = chunks.pop()
            chunks[-1] += last
        out += chunks
    return out
