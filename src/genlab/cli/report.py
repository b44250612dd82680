"""`genlab report RUN`: the run as one static page (loss curve, samples per eval, figures)."""

from __future__ import annotations

# Commands import the engines they run inside their bodies, on purpose: `genlab --help` and a bad flag answer
# at once, before torch (seconds) loads.

from pathlib import Path
from typing import Optional

import typer

from genlab.cli.root import app


def open_in_browser(page: Path) -> None:
    import webbrowser

    if not webbrowser.open(page.resolve().as_uri()):
        print(f"no browser to open here; open {page} yourself")


@app.command(no_args_is_help=True)
def report(
    run: Path = typer.Argument(..., help="The run folder."),
    out: Optional[Path] = typer.Option(None, "--out", help="The page to write (default: RUN/index.html)."),
    open_page: bool = typer.Option(False, "--open", help="Open the page in your browser."),
) -> None:
    """Write a run's page: what it is, its figures, its loss curve and its samples at every eval (no network needed)."""
    from genlab.workflows.report import write_report

    page = write_report(run, out)
    print(page)
    if open_page:
        open_in_browser(page)
