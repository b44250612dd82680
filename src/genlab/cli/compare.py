"""`genlab compare RUN_OR_CONFIG...`: several sequence (or image) runs on the same data, one table and one plot."""

from __future__ import annotations

# Commands import the engines they run inside their bodies, on purpose: `genlab --help` and a bad flag answer
# at once, before torch (seconds) loads.

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from genlab.cli.root import app, threads_option, use_threads
from genlab.cli.train import trackers


@app.command()
def compare(
    items: list[str] = typer.Argument(None, help="Run directories to read, TOML run configs to train first (e.g. recipes/tinyshakespeare-*.toml), or remote:URL#MODEL endpoints to measure beside them."),
    models: Optional[str] = typer.Option(None, "--models", help="Also train these families with their defaults, comma-separated: lstm,gru,fnet,gpt,ngram (or with --task image: dcgan,stylegan,pixelcnn,...)."),
    task: str = typer.Option("text", "--task", help="Task of the --models runs: text, code, music or image."),
    data: Optional[str] = typer.Option(None, "--data", help="Train every config on this file, folder or dataset (the same for all)."),
    max_time: Optional[float] = typer.Option(None, "--max-time", help="Seconds of training for every trained run: an equal wall-clock budget."),
    out: Path = typer.Option(Path("runs/compare"), "--out", help="Folder for trained runs, compare.json and val_loss.png."),
    set_: list[str] = typer.Option([], "--set", help="A config field for every trained run: --set train.seed=1 (repeatable)."),
    device: str = typer.Option("cpu", "--device", help="Where to measure: auto, cpu or cuda."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    n: int = typer.Option(256, "--n", help="Image runs: generated images per FID, the same for every run."),
    log: Optional[str] = typer.Option(None, "--log", help="Log every trained run to tensorboard, mlflow or both."),
    threads: str = threads_option(),
) -> None:
    """Train or read several runs and compare parameters, val loss, bits per char, speed and wall time (image runs:
    FID, KID, precision, recall, speed and wall time)."""
    use_threads(threads)
    from genlab.workflows.compare import compare as run_compare, format_table

    family_list = [m.strip() for m in models.split(",") if m.strip()] if models else None
    set_ = [*set_, *([f"train.log={json.dumps(trackers(log))}"] if log else [])]  # the trained runs log there
    if (out / "compare.json").exists():  # its runs resume; the table and plot are made again
        print(f"{out} holds an earlier comparison: its runs resume, and compare.json is replaced "
              "(--out NEW keeps both)", file=sys.stderr)
    rows = run_compare(items or [], out, family_list, task, data, max_time, set_, device, progress=not quiet, n=n)
    print(format_table(rows))
    for row in rows:
        if "scored_chars" in row:
            print(f"{row['name']}: bits per {row['unit']} of the first {row['scored_chars']:,} characters of the val split "
                  "(its prompt logprobs), and decoding as a client sees it")
        if "note" in row:
            print(f"{row['name']}: {row['note']}", file=sys.stderr)
    print(f"wrote {out / 'compare.json'} and {out / ('fid.png' if rows and 'fid' in rows[0] else 'val_loss.png')}")
