"""Helpers of the benchmarks that score sets with ``sliplink eval`` and print JSON."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def eval_report(images: Path, labels: Path, *, jobs: int, model: str | None = None) -> dict:
    """``sliplink eval``'s JSON report of one labelled set (run as its own process, as a user
    runs it)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
        cmd = [sys.executable, "-m", "cli.main", "eval", str(images), "--labels", str(labels),
               "--jobs", str(jobs), "--json", tmp.name]  # fmt: skip
        if model:
            cmd += ["--model", model]
        subprocess.run(cmd, check=True, cwd=REPO_ROOT, stdout=subprocess.DEVNULL)
        return json.loads(Path(tmp.name).read_text())


def emit(result: dict, json_path: Path | None) -> None:
    """Print ``result`` as JSON and write it to ``json_path`` when given."""
    text = json.dumps(result, indent=1)
    print(text)
    if json_path:
        json_path.write_text(text + "\n")
