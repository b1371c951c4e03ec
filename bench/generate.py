"""Sample-slip generation speed: slips per second, wall clock and CPU.

Generates a set into a temporary folder, prints one JSON object and writes it to
bench/results/generate.json.

    .venv/bin/python bench/generate.py --writers 20 --slips-per-writer 10 --jobs 2 --masks
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--writers", type=int, default=20)
    ap.add_argument("--slips-per-writer", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--split", default="heldout", choices=["heldout", "fit"])
    ap.add_argument("--masks", action="store_true")
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results")
    args = ap.parse_args()

    from sample_slips import generate

    n = args.writers * args.slips_per_writer
    with tempfile.TemporaryDirectory() as tmp:
        # Warm-up outside the timing: font loading and design drawing happen once per process.
        generate(Path(tmp) / "warm", writers=1, slips_per_writer=1, seed=0, split=args.split)
        wall0, cpu0 = time.perf_counter(), os.times()
        out = generate(
            Path(tmp) / "set",
            writers=args.writers,
            slips_per_writer=args.slips_per_writer,
            seed=args.seed,
            split=args.split,
            masks=args.masks,
            jobs=args.jobs,
        )
        wall = time.perf_counter() - wall0
        t = os.times()
        # CPU of this process and of the finished worker processes.
        cpu = (t.user - cpu0.user) + (t.system - cpu0.system)
        cpu += (t.children_user - cpu0.children_user) + (t.children_system - cpu0.children_system)
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    result = {
        "bench": "generate",
        "slips": n,
        "jobs": args.jobs,
        "masks": args.masks,
        "split": args.split,
        "wall_s": round(wall, 3),
        "slips_per_s": round(n / wall, 2),
        "cpu_s_per_slip": round(cpu / n, 4),
        "slips_per_cpu_s": round(n / cpu, 2) if cpu > 0 else None,
        "bytes_per_slip": int(size / n),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(json.dumps(result))
    if not args.no_save:
        res = ROOT / "bench" / "results"
        res.mkdir(parents=True, exist_ok=True)
        (res / "generate.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
