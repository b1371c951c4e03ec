"""Interleaved A/B of the embedding: this tree's ``cv`` against another git ref's.

    PYTHONPATH=. .venv/bin/python bench/embed_ab.py [--base main] [--rounds 5] [--check]

Two worker processes, one importing each tree's ``cv`` (the base is ``git archive``d to a
temporary directory), embed the same slips one after the other in alternating order, so a
load on the machine's other core hits both alike.  Prints JSON: each side's median CPU ms
per slip (decode included, ``time.process_time`` in the worker, as bench/embed.py) and the
median of the paired differences (base - this tree, per slip and round).

``--check`` first asserts that both trees compute the same thing: the largest absolute
difference of every raw feature family, the RootSIFT rows and the final embedding over
all slips must stay under ``--tol`` (raw extraction alone differs by ~1e-8 between
processes).
"""

from __future__ import annotations

import argparse
import json
import pickle
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import IO, Any

REPO_ROOT = Path(__file__).resolve().parents[1]


def _worker(tree: str) -> None:
    """Serve requests (slip path, want features?) from stdin with pickled replies on stdout."""
    sys.path.insert(0, tree)
    from cv.embed import load_default_model, worker_process_setup
    from cv.preprocess import load_image

    worker_process_setup()
    model = load_default_model()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            path, features = pickle.load(stdin)
        except EOFError:
            return
        if features:
            image = load_image(Path(path).read_bytes())
            raw = model.extract(image, design=False)
            reply: Any = (raw.hist, raw.descriptors, model.transform_raw([raw])[0])
        else:
            c0 = time.process_time()
            model.embed(load_image(Path(path).read_bytes()))
            reply = time.process_time() - c0
        pickle.dump(reply, stdout)
        stdout.flush()


class _Side:
    def __init__(self, tree: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", str(tree)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._in: IO[bytes] = self.proc.stdin  # type: ignore[assignment]
        self._out: IO[bytes] = self.proc.stdout  # type: ignore[assignment]

    def ask(self, path: Path, features: bool) -> Any:
        pickle.dump((str(path), features), self._in)
        self._in.flush()
        return pickle.load(self._out)

    def close(self) -> None:
        self._in.close()
        self.proc.wait()


def _max_differences(a: Any, b: Any) -> dict[str, float]:
    import numpy as np

    (hist_a, desc_a, emb_a), (hist_b, desc_b, emb_b) = a, b
    assert hist_a.keys() == hist_b.keys() and desc_a.shape == desc_b.shape
    out = {f: float(np.abs(hist_a[f] - hist_b[f]).max()) for f in hist_a}
    out["descriptors"] = float(np.abs(desc_a - desc_b).max()) if desc_a.size else 0.0
    out["embedding"] = float(np.abs(emb_a - emb_b).max())
    return out


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _worker(sys.argv[2])
        return
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--base", default="main", help="git ref to compare against")
    ap.add_argument("--dir", type=Path, default=REPO_ROOT / "sample_slips" / "set")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--check", action="store_true", help="assert equal outputs first")
    ap.add_argument("--tol", type=float, default=1e-6)
    args = ap.parse_args()
    paths = sorted(p for p in args.dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "archive", args.base, "cv"],
            check=True,
            capture_output=True,
        ).stdout
        with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        base, this = _Side(Path(tmp)), _Side(REPO_ROOT)
        try:
            out: dict[str, Any] = {"base": args.base, "slips": len(paths)}
            if args.check:
                worst: dict[str, float] = {}
                for p in paths:
                    d = _max_differences(base.ask(p, True), this.ask(p, True))
                    worst = {k: max(v, worst.get(k, 0.0)) for k, v in d.items()}
                out["max_abs_difference"] = worst
                bad = {k: v for k, v in worst.items() if not v < args.tol}
                if bad:
                    print(json.dumps(out, indent=2))
                    raise SystemExit(f"outputs differ beyond {args.tol}: {bad}")
            for side in (base, this):  # warm-up (imports, allocations)
                side.ask(paths[0], False)
            cpu_base, cpu_this = [], []
            for r in range(args.rounds):
                for i, p in enumerate(paths):
                    first, second = (base, this) if (i + r) % 2 == 0 else (this, base)
                    t = {first: first.ask(p, False), second: second.ask(p, False)}
                    cpu_base.append(t[base])
                    cpu_this.append(t[this])
            ms_base, ms_this = np.array(cpu_base) * 1000, np.array(cpu_this) * 1000
            by_round = (ms_base - ms_this).reshape(args.rounds, len(paths))
            out.update(
                {
                    "rounds": args.rounds,
                    "cpu_ms_base_median": float(np.median(ms_base)),
                    "cpu_ms_this_median": float(np.median(ms_this)),
                    "cpu_ms_saved_paired_median": float(np.median(ms_base - ms_this)),
                    "cpu_ms_saved_per_round_median": [
                        round(float(np.median(d)), 2) for d in by_round
                    ],
                }
            )
            print(json.dumps(out, indent=2))
        finally:
            base.close()
            this.close()


if __name__ == "__main__":
    main()
