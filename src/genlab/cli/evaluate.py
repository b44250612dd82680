"""`genlab eval RUN`: the run's numbers on held-out data, as a table and JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from genlab.cli import app


def print_table(results: dict) -> None:
    width = max(len(k) for k in results)
    for key, value in results.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {shown}")


@app.command("eval", no_args_is_help=True)
def evaluate(
    run: str = typer.Argument(..., help="A run directory."),
    data: Optional[str] = typer.Option(None, "--data", help="Evaluate on this file, folder or dataset instead of the run's val split."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the JSON here (default: RUN/eval.json)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the generated samples that diversity metrics use."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
) -> None:
    """Evaluate a run: loss, bits per char/byte, perplexity and diversity (text, code); music metrics; FID/KID (images)."""
    from genlab.api import load
    from genlab.runs import atomic_write_json

    gen = load(run, device=device)
    results = gen.evaluate(data=data, seed=seed)
    print_table(results)
    dest = out or Path(run) / "eval.json"
    atomic_write_json(dest, results)
    print(f"wrote {dest}")
