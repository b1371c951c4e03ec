"""Entry point of the `sliplink` console script."""

from __future__ import annotations

import importlib
import importlib.util

import typer

app = typer.Typer(
    help="sliplink: link betting slips by handwriting and raise risk alerts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

from cli import server  # noqa: E402

server.register(app)

# Command groups owned by other modules; each registers its commands on the app.
for _name in (
    "cli.offline",
    "cli.cluster_cmd",
    "cli.users_cmd",
    "cli.rules_cmd",
    "cli.models_cmd",
):
    if importlib.util.find_spec(_name) is not None:
        importlib.import_module(_name).register(app)
if importlib.util.find_spec("cli.samples") is not None:
    app.add_typer(importlib.import_module("cli.samples").app, name="samples")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
