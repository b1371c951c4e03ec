"""Command-line options that several commands take, declared once so they read the same."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ModelFileOption = Annotated[
    Path | None, typer.Option("--model", help="Model file (default: shipped).")
]
TemplatesOption = Annotated[Path | None, typer.Option("--templates", help="Blank slip designs.")]
JobsOption = Annotated[int, typer.Option("--jobs", help="Worker processes.")]
