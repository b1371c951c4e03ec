"""`sliplink samples ...`: generated slips with known writers."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from cli.options import JobsOption

app = typer.Typer(
    help="Generate realistic synthetic betting slips with known writers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _group() -> None:
    """Generate realistic synthetic betting slips with known writers."""


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code=2)


@app.command("generate")
def generate_cmd(
    out: Annotated[Path, typer.Option("--out", help="Output folder (created if needed).")],
    writers: Annotated[int, typer.Option("--writers", help="Number of writers.")] = 24,
    slips_per_writer: Annotated[
        int, typer.Option("--slips-per-writer", help="Slips per writer.")
    ] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Seed; same seed, same bytes.")] = 0,
    split: Annotated[
        str, typer.Option("--split", help="heldout (evaluation fonts) or fit (training fonts).")
    ] = "heldout",
    masks: Annotated[
        bool, typer.Option("--masks/--no-masks", help="Also write handwriting/print masks.")
    ] = False,
    jobs: JobsOption = 1,
    templates: Annotated[
        bool,
        typer.Option(
            "--templates/--no-templates", help="Also write blank designs to OUT/templates/."
        ),
    ] = False,
    first_writer: Annotated[
        int,
        typer.Option(
            "--first-writer",
            help="Number of the first writer (1 = w001); a writer is the same person in every set.",
        ),
    ] = 1,
) -> None:
    """Write slip images, labels.csv, bets.json and writers.json into OUT."""
    from sample_slips import generate, template_images

    if writers < 1:
        _fail(f"--writers must be >= 1, got {writers}")
    if slips_per_writer < 1:
        _fail(f"--slips-per-writer must be >= 1, got {slips_per_writer}")
    if seed < 0:
        _fail(f"--seed must be >= 0, got {seed}")
    if jobs < 1:
        _fail(f"--jobs must be >= 1, got {jobs}")
    if first_writer < 1:
        _fail(f"--first-writer must be >= 1, got {first_writer}")
    if split not in ("heldout", "fit"):
        _fail(f"--split must be 'heldout' or 'fit', got {split!r}")
    total = writers * slips_per_writer
    start = time.monotonic()
    last = [0.0]
    shown = [False]

    tty = sys.stderr.isatty()

    def progress(done: int, n: int) -> None:
        now = time.monotonic()
        # On a terminal one line redrawn twice a second; in a log a line every 5 s.
        if done == n or now - last[0] > (0.5 if tty else 5.0):
            last[0], shown[0] = now, tty
            rate = done / max(now - start, 1e-6)
            msg = f"slips {done}/{n}  {rate:.1f}/s"
            print(f"\r{msg}" if tty else msg, end="" if tty else "\n", file=sys.stderr, flush=True)

    try:
        generate(
            out,
            writers=writers,
            slips_per_writer=slips_per_writer,
            seed=seed,
            split=split,
            masks=masks,
            jobs=jobs,
            progress=progress,
            first_writer=first_writer,
        )
        if templates:
            template_images(out / "templates")
    except ValueError as e:
        if shown[0]:
            print(file=sys.stderr)
        _fail(str(e))
    if shown[0]:
        print(file=sys.stderr)
    elapsed = time.monotonic() - start
    print(f"wrote {total} slips to {out} in {elapsed:.1f} s", file=sys.stderr)
