"""`sliplink serve`, `sliplink worker` and `sliplink demo`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(worker)
    app.command()(demo)


def serve(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, min=1, max=65535, help="port to listen on"),
) -> None:
    """API + web UI on the configured database and broker (embedded default when unset)."""
    import uvicorn

    from cli.runtime import build_app

    app = build_app()
    typer.echo(f"sliplink serving on http://{host}:{port} (docs at /docs)", err=True)
    # open live-feed streams would otherwise hold shutdown for minutes
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)


def worker(
    queues: str = typer.Option("", help="comma-separated queues (default: all)"),
    concurrency: int = typer.Option(2, min=1, help="worker processes"),
) -> None:
    """A Celery worker for the configured broker (SLIPLINK_BROKER_URL)."""
    from cli.runtime import run_worker

    run_worker(queues=[q for q in queues.split(",") if q], concurrency=concurrency)


def demo(
    no_serve: bool = typer.Option(False, "--no-serve", help="print the summary and exit"),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="port for the UI"),
) -> None:
    """Fresh embedded database, the shipped sample slips pushed through the real HTTP API,
    the pipeline run, a summary printed, then the UI served until Ctrl-C."""
    from cli.demo import run_demo

    raise typer.Exit(run_demo(port=port, serve=not no_serve))
