"""`genlab demo`: the main job — train small models offline and show what they make."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from genlab.cli.root import app, threads_option, use_threads
from genlab.errors import GenlabError


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Where the demo's runs go."),
    only: Optional[str] = typer.Option(None, "--only", help="Comma-separated parts to run (default: all)."),
    seconds: float = typer.Option(60.0, "--seconds", help="Training time per part, in seconds."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    threads: str = threads_option(),
) -> None:
    """Train small models on embedded data (offline) and print/save what they make before and after."""
    use_threads(threads)
    from genlab.demo import PARTS, run_demo

    parts = [p.strip() for p in only.split(",")] if only else list(PARTS)
    for p in parts:
        if p not in PARTS:
            raise GenlabError(f"--only: unknown part {p!r} (parts: {', '.join(PARTS)})")
    run_demo(out, parts, seconds, progress=not quiet)
