"""Embedding speed: ms per slip (decode + preprocessing + features + projection) and slips/s.

    PYTHONPATH=. .venv/bin/python bench/embed.py [--model M] [--dir sample_slips/set] [-n N]
        [--repeat 3]

Prints JSON: per-slip wall time in one process (median, p95), the input size, and the
throughput of :func:`cv.embed.embed_files` with 1 and 2 processes (over ``--repeat`` passes
of the slips). The budget is 40 ms per
1.2 MP slip on one core, i.e. 50 slips/s on 2 cores.  Every slip of ``--dir`` is timed unless
``-n`` says fewer: the first 40 sample slips ran 35 ms median where all 120 ran 43 ms
(2026-12-06), so a subset flatters the figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.machine import reference  # noqa: E402
from cv.embed import (  # noqa: E402
    EmbeddingModel,
    embed_files,
    load_default_model,
    worker_process_setup,
)
from cv.preprocess import load_image  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--dir", type=Path, default=REPO_ROOT / "sample_slips" / "set")
    ap.add_argument("-n", type=int, default=None, help="slips to time (default: all)")
    ap.add_argument(
        "--repeat", type=int, default=3, help="passes over the slips for the slips/s figures"
    )
    args = ap.parse_args()
    # the machine's reference first, with the allocator as other benchmarks run it
    # (keep_freed_memory below also speeds up the reference's own workloads by ~15 %)
    machine = reference()
    # what embed_files does in its workers: one BLAS / OpenCV thread per process, freed
    # memory kept for the next slip
    worker_process_setup()
    model = EmbeddingModel.load(args.model) if args.model else load_default_model()
    paths = sorted(p for p in args.dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    paths = paths if args.n is None else paths[: args.n]
    if not paths:
        raise SystemExit(f"{args.dir}: no images")
    model.embed(load_image(paths[0].read_bytes()))  # warm-up (imports, allocations)
    times, cpu, pixels = [], [], []
    for p in paths:
        t0, c0 = time.perf_counter(), time.process_time()
        image = load_image(p.read_bytes())
        model.embed(image)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        pixels.append(image.size)
    # Throughput over the slips repeated: one pass of 120 slips lasts ~2 s on 2 processes,
    # where starting the pool and the last chunk's lone worker cost ~10 % (one pass: 50.6
    # slips/s, three: 59.2 on 2026-12-06); the steady rate is what a batch job sees.
    rates = {}
    batch = paths * args.repeat
    for jobs in (1, 2):
        t0 = time.perf_counter()
        embed_files(batch, model=model, jobs=jobs)
        rates[f"slips_per_s_{jobs}proc"] = len(batch) / (time.perf_counter() - t0)
    ms = np.array(times) * 1000
    out = {
        "model": model.version,
        "slips": len(paths),
        "throughput_passes": args.repeat,
        "megapixels_median": float(np.median(pixels) / 1e6),
        "ms_per_slip_median": float(np.median(ms)),
        "ms_per_slip_p95": float(np.percentile(ms, 95)),
        "cpu_ms_per_slip_median": float(np.median(cpu) * 1000),
        **rates,
        "machine": machine,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
