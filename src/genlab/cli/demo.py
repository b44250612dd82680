"""`genlab demo`: the main job — train small models offline and show what they make."""

from __future__ import annotations

# Commands import the engines they run inside their bodies, on purpose: `genlab --help` and a bad flag answer
# at once, before torch (seconds) loads.

from pathlib import Path
from typing import Optional

import typer

from genlab.cli.root import app, threads_option, use_threads
from genlab.core.errors import GenlabError


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Where the demo's runs go."),
    only: Optional[str] = typer.Option(None, "--only", help="Comma-separated parts to run (default: all)."),
    seconds: Optional[float] = typer.Option(None, "--seconds", help="Wall time per part, everything included (default: about a minute of training each, longer where a slow machine has not learned yet)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    open_page: bool = typer.Option(False, "--open", help="Open the demo's page (OUT/index.html) in your browser."),
    pictures: Optional[Path] = typer.Option(None, "--pictures", help="Also write the README's pictures into this folder (docs/img)."),
    threads: str = threads_option(),
) -> None:
    """Train small models on embedded data (offline), print what they make before and after, and write it all
    as one page to look at (OUT/index.html)."""
    use_threads(threads)
    from genlab.workflows.demo import PARTS, run_demo

    if seconds is not None and not 0 < seconds < float("inf"):
        raise GenlabError(f"--seconds: must be a positive number of seconds, not {seconds}")
    parts = [p.strip() for p in only.split(",")] if only else list(PARTS)
    for p in parts:
        if p not in PARTS:
            raise GenlabError(f"--only: unknown part {p!r} (parts: {', '.join(PARTS)})")
    page = run_demo(out, parts, seconds, progress=not quiet, pictures=pictures)
    if open_page:
        from genlab.cli.report import open_in_browser

        open_in_browser(page)
