"""`genlab train MODALITY`: one verb and one flag vocabulary for every modality."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from genlab.cli.root import app, threads_option


@app.command(no_args_is_help=True)
def train(
    task: str = typer.Argument(..., help="What to model: text, code, music, audio or image."),
    data: Optional[str] = typer.Option(None, "--data", help="A file, a folder, or a named dataset (python-docs, python-stdlib, tinyshakespeare, ...)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model family: gpt, lstm, gru, rnn, fnet, ngram (sequences); wavenet (audio); gan, dcgan, vae, ddpm (images)."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="char, bpe or word (text); code (code, the default there); midi (music); mulaw (audio; the default there)."),
    out: Optional[str] = typer.Option(None, "--out", help="Run directory to write (resumed if it holds a checkpoint of the same config)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Optimizer steps to train for."),
    max_time: Optional[float] = typer.Option(None, "--max-time", help="Stop after this many seconds of training."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Sequences (or images) per step."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu or cuda."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for initialization, data split and batches."),
    config: Optional[Path] = typer.Option(None, "--config", help="A TOML run config (see recipes/); flags override it."),
    set_: list[str] = typer.Option([], "--set", help="Any config field: --set model.n_layer=6 (repeatable)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete what --out holds and start afresh instead of resuming."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    threads: str = threads_option(),
) -> None:
    """Train a model; the run directory gets config.toml, model.safetensors, metrics, samples and a loss plot."""
    from genlab.api import train as run_training
    from genlab.config import build_config

    flags = dict(data=data, model=model, tokenizer=tokenizer, out=out, max_steps=max_steps, max_time=max_time,
                 batch_size=batch_size, lr=lr, device=device, seed=seed)
    cfg = build_config(config, flags, set_, base={"task": task})
    if cfg.train.threads is None:  # --set train.threads or the config file win over the flag's default
        cfg.train.threads = threads
    if quiet:
        cfg.train.progress = False
    run = run_training(cfg, progress=not quiet, overwrite=overwrite)
    shown = {k: v for k, v in run.results.items() if k.startswith("val_") or k in ("step", "elapsed")}
    import torch

    shown["threads"] = torch.get_num_threads()
    print("finished: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()))
    print(f"run saved in {run.path}   next: genlab sample {run.path}   genlab eval {run.path}")
