"""The `sliplink` command line (Typer): one module per command group."""
