"""Draw the planned slips and write a labelled set (images, masks, labels.csv, bets.json)."""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from sample_slips.handwriting import cap_ratio, render_line, render_mark, strike
from sample_slips.plan import Plan, SlipPlan, make_plan
from sample_slips.scan import paste_max, rotate_bound, scan, stamp
from sample_slips.splits import templates_for
from sample_slips.templates import DESIGNS, Layout, design
from sample_slips.writers import Writer, writer_dict

Progress = Callable[[int, int], None]


def _write_text(
    hand: np.ndarray,
    item: dict[str, str],
    box: tuple[int, int, int, int],
    w: Writer,
    rng: np.random.Generator,
    *,
    size0: float,
    ruled: bool,
) -> None:
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    # size0 is a capital height; boxes cap it, then it becomes a nominal font size.
    size0 = min(size0, bh * 0.55) / cap_ratio(w.font)
    size = size0
    tilt = w.rotation + rng.normal(0, 0.7)
    pieces = [(item["crossed"], True), (item["text"], False)] if "crossed" in item else []
    pieces = pieces or [(item["text"], False)]
    for _attempt in range(2):
        runs = [render_line(t, w, rng, size=size, tilt=tilt) for t, _ in pieces]
        pad = size * 0.5  # render_line leaves half a size of margin left and right
        total = sum(r[0].shape[1] - 2 * pad for r in runs) + size * 0.4 * (len(runs) - 1)
        if total <= bw * 1.02 or size < size0 * 0.62:
            break
        # People squeeze long text into a box; beyond 40% smaller they run over the edge.
        size = max(size0 * 0.6, size * bw / total * 0.97)
    x = x0 + w.margin * size * 0.5 + rng.normal(0, size * 0.08)
    if x + total > x1 + size:
        x = max(x0 - size * 0.1, x1 + size * 0.5 - total)
    base_y = (y1 - 6 if ruled else y1 - bh * 0.2) + rng.normal(0, max(2.0, bh * 0.035))
    for (ink, base), (_, crossed) in zip(runs, pieces, strict=True):
        if crossed:
            ink = strike(ink, rng, base=base, size=size)
        paste_max(hand, ink, int(round(x - pad)), int(round(base_y - base)))
        x += ink.shape[1] - 2 * pad + size * 0.4
        base_y += rng.normal(0, size * 0.05)


def _draw_hand(
    p: SlipPlan, lay: Layout, rng: np.random.Generator, *, writer: Writer | None = None
) -> np.ndarray:
    hand = np.zeros((lay.height, lay.width), np.uint8)
    w = writer or p.writer
    size0 = w.size * rng.uniform(0.93, 1.07)
    for it in p.items:
        box = lay.fields[it["field"]]
        if "mark" in it:
            bw = box[2] - box[0]
            mark = render_mark(it["mark"], w, rng, box=bw)
            cx = (box[0] + box[2]) / 2 + rng.normal(0, bw * 0.08)
            cy = (box[1] + box[3]) / 2 + rng.normal(0, bw * 0.08)
            paste_max(hand, mark, int(cx - mark.shape[1] / 2), int(cy - mark.shape[0] / 2))
            continue
        ruled = it["field"].endswith(".line") or it["field"] == "type"
        _write_text(hand, it, box, w, rng, size0=size0, ruled=ruled)
    return hand


def _stamp_lines(p: SlipPlan) -> list[str]:
    return [
        f"SHOP {p.shop}  TILL {p.till}",
        p.placed.strftime("%d/%m/%y %H:%M:%S"),
        f"BET ID {p.bet_id}",
        f"STAKE GBP {p.total:.2f}",
    ]


def _render(
    p: SlipPlan, *, seed: int, blank_design: bool = False
) -> tuple[bytes, np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 31337, p.index])
    tmpl, lay = design(p.template)
    if blank_design:
        tmpl = np.zeros_like(tmpl)
    # About one slip in seven is written with another pen (weight and ink change).
    pen_change = bool(rng.random() < 0.15)
    w = p.writer
    if pen_change:
        w = replace(w, weight=float(np.clip(w.weight + rng.uniform(-0.7, 0.7), -0.8, 1.3)))
    hand = _draw_hand(p, lay, rng, writer=w)
    ink = float(np.clip(lay.ink + rng.normal(0, 0.04), 0.4, 1.0))
    print_cov = tmpl.copy()
    print_dark = cv2.convertScaleAbs(tmpl, alpha=ink)
    if p.stamp:
        st = stamp(_stamp_lines(p), p.bet_id, rng)
        angle = 90.0 if rng.random() < 0.12 else float(rng.normal(0, 3.0))
        st = rotate_bound(st, angle)
        sh, sw = st.shape
        x = int(rng.uniform(lay.width * 0.15, max(lay.width * 0.15 + 1, lay.width - sw * 0.7)))
        y = int(rng.uniform(lay.height * 0.2, max(lay.height * 0.2 + 1, lay.height - sh * 0.6)))
        paste_max(print_cov, st, x, y)
        paste_max(print_dark, cv2.convertScaleAbs(st, alpha=rng.uniform(0.7, 0.95)), x, y)
    hand_ink = float(np.clip(p.writer.ink + rng.normal(0, 0.04), 0.35, 1.0))
    if pen_change:
        hand_ink = float(rng.uniform(0.5, 0.95))
    image, hmask, pmask = scan(
        hand=hand, hand_ink=hand_ink, print_cov=print_cov, print_dark=print_dark, rng=rng
    )
    quality = int(rng.integers(50, 86))
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 greyscale image
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes(), hmask, pmask


def render_slip(
    p: SlipPlan, *, seed: int, blank_design: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one planned slip (as :func:`generate` does, without writing files).

    ``blank_design`` draws it without its printed form, with the same randomness: the
    print mask is then the till stamp's alone, aligned with the full slip's (what
    ``bench/stamp.py`` measures the stamp's leftovers against).

    Returns
    -------
    image, hand_mask, print_mask : ndarray, uint8, shape (rows, cols)
        The greyscale scan (JPEG artefacts included), and 255-where-ink masks of the
        handwriting and the printed ink (template, stamp, barcode), pixel-aligned with it.
    """
    buf, hmask, pmask = _render(p, seed=seed, blank_design=blank_design)
    image = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None:  # pragma: no cover - we just encoded it
        raise RuntimeError("JPEG decoding failed")
    return np.asarray(image, np.uint8), hmask, pmask


def _save_png(path: Path, arr: np.ndarray, *, rle: bool = False) -> None:
    # Masks are long runs of 0/255: run-length strategy is as small as zlib level 9 and
    # 10x faster (measured 10 ms vs 107 ms per mask).
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1 if rle else 6]
    if rle:
        params += [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    ok, buf = cv2.imencode(".png", arr, params)
    if not ok:  # pragma: no cover
        raise RuntimeError(f"PNG encoding failed for {path}")
    path.write_bytes(buf.tobytes())


def _work(args: tuple[SlipPlan, int, str, bool]) -> str:
    p, seed, out, masks = args
    buf, hmask, pmask = _render(p, seed=seed)
    out_dir = Path(out)
    (out_dir / p.image).write_bytes(buf)
    if masks:
        stem = Path(p.image).stem
        _save_png(out_dir / "masks" / f"{stem}.png", hmask, rle=True)
        _save_png(out_dir / "masks" / f"{stem}_print.png", pmask, rle=True)
    return p.image


def _init_worker() -> None:
    # One OpenCV thread per worker process: jobs processes already fill the cores.
    cv2.setNumThreads(1)


def _check_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"out_dir {out_dir}: cannot create ({e.strerror})") from e
    if not out_dir.is_dir() or not os.access(out_dir, os.W_OK):
        raise ValueError(f"out_dir {out_dir}: not a writable directory")


def generate(
    out_dir: Path,
    *,
    writers: int,
    slips_per_writer: int,
    seed: int,
    split: str = "heldout",
    masks: bool = False,
    jobs: int = 1,
    progress: Progress | None = None,
    random_designs: float = 0.0,
    first_writer: int = 1,
) -> Path:
    """Generate a labelled set of slips.

    Writes ``slip_00001.jpg`` ... (greyscale JPEG), ``labels.csv`` (image, writer, customer, shop,
    template, font, split), ``bets.json`` (shops, customers, bets, scenarios),
    ``writers.json`` and, with ``masks``, ``masks/<stem>.png`` (handwriting) and
    ``masks/<stem>_print.png`` (printed ink). The same arguments give the same bytes,
    whatever ``jobs`` is.

    Parameters
    ----------
    out_dir : Path
        Folder to write into (created if needed).
    writers, slips_per_writer : int
        Number of writers, and slips each writes (both >= 1).
    seed : int
        Seed of everything that varies between sets (bets, texts, rendering).
    split : {"heldout", "fit"}
        Which fonts, designs and writer ids to use (see :mod:`sample_slips.splits`).
    masks : bool
        Also write the ink masks.
    jobs : int
        Worker processes (>= 1).
    progress : callable(done, total), optional
        Called after each slip.
    random_designs : float
        Fit split only: fraction of slips drawn on procedurally randomised designs (for
        fitting the print/handwriting separator on more than four layouts); 0 = none.
    first_writer : int
        Number of the set's first writer in the split (1 = w001); writers past those of any
        earlier set are writers no figure has seen.

    Returns
    -------
    Path
        ``out_dir``.
    """
    for name, value in (("writers", writers), ("slips_per_writer", slips_per_writer)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    templates_for(split)  # validates split
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    if masks:
        (out_dir / "masks").mkdir(exist_ok=True)
    plan = make_plan(
        writers=writers,
        slips_per_writer=slips_per_writer,
        seed=seed,
        split=split,
        random_designs=random_designs,
        first_writer=first_writer,
    )
    tasks = [(p, seed, str(out_dir), masks) for p in plan.slips]
    total = len(tasks)
    if jobs == 1 or total < 4:
        for k, t in enumerate(tasks, 1):
            _work(t)
            if progress:
                progress(k, total)
    else:
        with mp.get_context("fork").Pool(min(jobs, total), initializer=_init_worker) as pool:
            for k, _ in enumerate(pool.imap(_work, tasks, chunksize=2), 1):
                if progress:
                    progress(k, total)
    _write_records(out_dir, plan, split)
    return out_dir


def _write_records(out_dir: Path, plan: Plan, split: str) -> None:
    with (out_dir / "labels.csv").open("w", newline="") as fh:
        wr = csv.writer(fh, lineterminator="\n")
        wr.writerow(["image", "writer", "customer", "shop", "template", "font", "split"])
        for p in plan.slips:
            wr.writerow(
                [p.image, p.writer.id, p.customer or "", p.shop, p.template, p.writer.font, split]
            )
    bets = {
        "shops": plan.shops,
        "customers": plan.customers,
        "bets": [p.bet_record() for p in plan.slips],
        "scenarios": plan.scenarios,
    }
    (out_dir / "bets.json").write_text(json.dumps(bets, indent=1, ensure_ascii=False) + "\n")
    ws = {w.id: writer_dict(w) for w in plan.writers}
    (out_dir / "writers.json").write_text(json.dumps(ws, indent=1, ensure_ascii=False) + "\n")


def template_images(out_dir: Path, *, names: list[str] | None = None, seed: int = 0) -> list[Path]:
    """Write a blank scan (no handwriting, no stamp) of each design as ``<name>.png``.

    A clean reference scan: paper tone, print ink and a slight optical blur, no rotation
    or noise (so the PNG stays small and registration has a sharp target).

    Parameters
    ----------
    out_dir : Path
        Folder to write into (created if needed).
    names : list of str, optional
        Designs to write; default every design (``splits.TEMPLATES_FIT`` +
        ``splits.TEMPLATES_HELDOUT``).
    seed : int
        Seed of the paper tone.

    Returns
    -------
    list of Path
        The files written.
    """
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    names = list(DESIGNS) if names is None else names
    paths = []
    for k, name in enumerate(names):
        tmpl, lay = design(name)
        rng = np.random.default_rng([seed, 271828, k])
        paper = rng.uniform(0.93, 0.97) * 255.0
        img = (255.0 - tmpl.astype(np.float32) * lay.ink) * (paper / 255.0)
        blurred = cv2.GaussianBlur(img, (0, 0), 0.6)
        path = out_dir / f"{name}.png"
        _save_png(path, np.clip(np.rint(blurred), 0, 255).astype(np.uint8))
        paths.append(path)
    return paths
