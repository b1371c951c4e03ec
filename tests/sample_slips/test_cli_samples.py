"""`sliplink samples generate` (cli/samples.py)."""

from __future__ import annotations

import csv
from pathlib import Path

from typer.testing import CliRunner

from cli.samples import app


def test_generate_command(tmp_path: Path) -> None:
    out = tmp_path / "set"
    args = ["generate", "--writers", "2", "--slips-per-writer", "2", "--seed", "4"]
    res = CliRunner().invoke(app, [*args, "--out", str(out), "--masks", "--templates"])
    assert res.exit_code == 0, res.output
    with (out / "labels.csv").open(newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 4
    assert len(list((out / "masks").glob("*.png"))) == 8
    assert len(list((out / "templates").glob("*.png"))) == 6


def test_bad_arguments_fail_with_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["generate", "--writers", "0", "--out", str(tmp_path / "x")])
    assert res.exit_code != 0
    assert "--writers" in res.output
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = runner.invoke(app, ["generate", "--writers", "1", "--out", str(blocker / "x")])
    assert res.exit_code != 0
    assert "out_dir" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["generate", "--split", "train", "--out", str(tmp_path / "y")])
    assert res.exit_code != 0 and "--split" in res.output
