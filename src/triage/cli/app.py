"""The shared Typer app and console; command modules register on it."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Alert-stream triage: any alert format in, explained incidents out.")
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` as an error on stderr and return the exit to raise."""
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)
