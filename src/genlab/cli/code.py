"""`genlab eval-code` (functional correctness in a sandbox) and `genlab finetune-hf` (continue training a Hugging Face model on code)."""

from __future__ import annotations

# Commands import the engines they run inside their bodies, on purpose: `genlab --help` and a bad flag answer
# at once, before torch (seconds) loads.

from pathlib import Path
from typing import Optional

import typer

from genlab.cli.root import app
from genlab.core.errors import GenlabError, check_range


@app.command("eval-code", no_args_is_help=True)
def eval_code(
    run: Optional[str] = typer.Argument(None, help="A code run directory, or hf:PATH for a Hugging Face causal LM (omit with --canonical)."),
    problems: Path = typer.Option(..., "--problems", help="Problems in HumanEval JSONL format (.jsonl or .jsonl.gz)."),
    k: str = typer.Option("1", "--k", help="Comma-separated k values of pass@k, e.g. 1,10."),
    n: Optional[int] = typer.Option(None, "--n", help="Samples per problem (default: the largest k; 1 with --canonical)."),
    out: Path = typer.Option(Path("results"), "--out", help="Folder for completions.jsonl, tasks.jsonl and summary.json."),
    canonical: bool = typer.Option(False, "--canonical", help="Self-check: run each problem's canonical solution through the harness."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Sampling temperature (default: the run's)."),
    top_p: Optional[float] = typer.Option(None, "--top-p", help="Nucleus sampling threshold (1 = off)."),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="Draw only from the k likeliest tokens (0 = off)."),
    max_new_tokens: int = typer.Option(300, "--max-new-tokens", help="Longest completion, in tokens."),
    seed: int = typer.Option(0, "--seed", help="Seed of the first problem's samples (problem i uses seed+i)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Candidates executed at once (default: one per core)."),
    timeout: float = typer.Option(10.0, "--timeout", help="Wall-clock seconds per candidate."),
    memory_mb: int = typer.Option(1024, "--memory-mb", help="Address-space limit per candidate, in MiB (64 to 1048576)."),
    disk_mb: int = typer.Option(64, "--disk-mb", help="Scratch space per candidate, in MiB (also its largest file)."),
    unsafe_no_isolation: bool = typer.Option(False, "--unsafe-no-isolation", help="Run candidates without PID/mount/network namespaces where the machine has none (see docs/security.md)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """pass@k and syntax-valid rate of a code model on HumanEval-format problems, every candidate run in a sandbox."""
    from genlab.cli.evaluate import print_table
    from genlab.metrics.code import eval_code as run_eval, parse_ks
    from genlab.metrics.sandbox import Limits

    ks = parse_ks(k)
    if canonical == (run is not None):
        raise GenlabError("eval-code: give a RUN to evaluate, or --canonical to self-check the harness (not both)")
    n = n if n is not None else (1 if canonical else max(ks))
    check_range("--n", n, 1, 10_000)
    check_range("--timeout", timeout, 0.1, 3600)
    check_range("--memory-mb", memory_mb, 64, 1 << 20)
    check_range("--disk-mb", disk_mb, 1, 1 << 16)
    if workers is not None:
        check_range("--workers", workers, 1, 256)
    if max(ks) > n:
        raise GenlabError(f"--k {k}: pass@{max(ks)} needs at least {max(ks)} samples per problem (--n {n})")
    limits = Limits(wall_seconds=timeout, cpu_seconds=max(1, int(timeout)), memory_mb=memory_mb,
                    file_size_mb=disk_mb, disk_mb=disk_mb, isolation=not unsafe_no_isolation)
    generator = None
    if run is not None:
        from genlab.api import load

        generator = load(run, device=device)
    summary = run_eval(problems, out, generator, n=n, ks=ks, limits=limits, workers=workers, seed=seed,
                       progress=not quiet, temperature=temperature, top_p=top_p, top_k=top_k, max_new_tokens=max_new_tokens)
    print_table({key: value for key, value in summary.items() if not isinstance(value, dict)} | summary["statuses"])
    print(f"wrote {out / 'summary.json'}, {out / 'tasks.jsonl'} and {out / 'completions.jsonl'}")


@app.command("finetune-hf", no_args_is_help=True)
def finetune_hf(
    model: str = typer.Argument(..., help="hf:PATH (or hf:HUB_NAME when online) of a causal LM to continue training."),
    data: str = typer.Option(..., "--data", help="A code base: a folder, a git repository, or python-stdlib."),
    out: str = typer.Option(..., "--out", help="Folder for the fine-tuned model (loads back as hf:OUT)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Optimizer steps."),
    max_time: Optional[float] = typer.Option(None, "--max-time", help="Stop after this many seconds of training."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Windows per step."),
    block_size: int = typer.Option(256, "--block-size", help="Tokens per training window (capped by the model's context)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate (fine-tuning wants a small one, e.g. 5e-5)."),
    lora_rank: int = typer.Option(0, "--lora-rank", help="Train rank-r LoRA adapters (peft) instead of all weights; 0 = all weights."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu or cuda."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for the data split and batches."),
    set_: list[str] = typer.Option([], "--set", help="Any data/train config field: --set train.warmup_steps=10 (repeatable)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace what --out holds."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Fine-tune a Hugging Face causal LM on a code base with genlab's trainer (all weights, or LoRA)."""
    from genlab.core.config import build_config
    from genlab.tasks.code import code_defaults
    from genlab.tasks.hf import finetune

    if not model.startswith("hf:"):
        raise GenlabError(f"{model}: expected hf:PATH (genlab runs fine-tune with `genlab train code --set train.init_from=RUN`)")
    flags = dict(data=data, out=out, max_steps=max_steps, max_time=max_time, batch_size=batch_size, lr=lr, device=device, seed=seed)
    cfg = code_defaults(build_config(None, flags, set_, base={"task": "code"}))
    cfg.train.progress = not quiet
    if lora_rank < 0:
        raise GenlabError("--lora-rank: must be 0 (all weights) or a positive rank")
    finetune(model[3:], cfg, block_size=block_size, lora_rank=lora_rank, progress=not quiet, overwrite=overwrite)
    print(f"fine-tuned model saved in {out}   next: genlab sample hf:{out} --prompt 'def '")
