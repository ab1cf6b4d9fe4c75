"""The shared Typer app and console; command modules register on it."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Alert-stream triage: any alert format in, explained incidents out.")
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` as an error on stderr and return the exit to raise."""
    # One line, whatever the terminal width or the file names in it (a log reader greps it),
    # and a message is text, not markup (a label value may hold "[...]").
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)
