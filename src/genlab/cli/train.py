"""`genlab train MODALITY`: one verb and one flag vocabulary for every modality."""

from __future__ import annotations

# Commands import the engines they run inside their bodies, on purpose: `genlab --help` and a bad flag answer
# at once, before torch (seconds) loads.

from pathlib import Path
from typing import Optional

import typer

from genlab.cli.root import app, threads_option


@app.command(no_args_is_help=True)
def train(
    task: str = typer.Argument(..., help="What to model: text, code, music, audio, image, clip, or a plugin's task."),
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
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the training forward: a slower start (tens of seconds), faster steps; falls back to eager with a warning where no compiler works."),
    log: Optional[str] = typer.Option(None, "--log", help="Also log to experiment trackers: tensorboard, mlflow or both (tensorboard,mlflow); docs/tracking.md."),
    config: Optional[Path] = typer.Option(None, "--config", help="A TOML run config (see recipes/); flags override it."),
    set_: list[str] = typer.Option([], "--set", help="Any config field: --set model.n_layer=6 (repeatable)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete what --out holds and start afresh instead of resuming."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    threads: str = threads_option(),
) -> None:
    """Train a model; the run directory gets config.toml, model.safetensors, metrics, samples and a loss plot."""
    from genlab.core.config import build_config

    flags = dict(data=data, model=model, tokenizer=tokenizer, out=out, max_steps=max_steps, max_time=max_time,
                 batch_size=batch_size, lr=lr, device=device, seed=seed, compile=compile_ or None, log=trackers(log))
    cfg = build_config(config, flags, set_, base={"task": task})
    run = train_and_report(cfg, threads, quiet, overwrite)
    if run is None:
        return
    first = f'genlab search {run.path} "a seven" --out hits.png' if cfg.task == "clip" else f"genlab sample {run.path}"
    print(f"run saved in {run.path}   next: {first}   genlab eval {run.path}")


def trackers(flag: str | None) -> list[str] | None:
    """--log tensorboard,mlflow -> the list for train.log."""
    from genlab.core.errors import GenlabError
    from genlab.training.runlog import TRACKERS

    names = [name.strip() for name in flag.split(",") if name.strip()] if flag else []
    for name in names:
        if name not in TRACKERS:
            raise GenlabError(f"--log: {name!r} is not a tracker genlab logs to ({', '.join(TRACKERS)})")
    return names or None


def train_and_report(cfg, threads: str, quiet: bool, overwrite: bool):
    """Train `cfg` (the --threads flag unless the config set train.threads) and print its final figures; under
    torchrun only rank 0 reports, and the other ranks get None."""
    import torch

    from genlab.api import train as run_training
    from genlab.training.distributed import world

    if cfg.train.threads is None:  # --set train.threads or the config file win over the flag's default
        cfg.train.threads = threads
    if quiet:
        cfg.train.progress = False
    run = run_training(cfg, progress=not quiet, overwrite=overwrite)
    if not world().is_main:
        return None
    shown = {k: v for k, v in run.results.items() if k.startswith("val_") or k in ("step", "elapsed")}
    shown["threads"] = torch.get_num_threads()
    print("finished: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()))
    return run


@app.command(no_args_is_help=True)
def distill(
    teacher: str = typer.Option(..., "--teacher", help="The teacher: a finished text, code or music run, hf:PATH (a local Hugging Face causal LM), or remote:URL#MODEL (an OpenAI-compatible endpoint: the student learns from its samples, and from its top_logprobs where its tokens are the student's)."),
    teacher_samples: int = typer.Option(200, "--teacher-samples", help="remote: teachers: how many samples the student learns from."),
    teacher_logprobs: int = typer.Option(5, "--teacher-logprobs", help="remote: teachers: alternatives per token asked as soft targets (0-5; 0: its samples alone)."),
    out: str = typer.Option(..., "--out", help="The student's run directory (a normal run: sample, eval, serve work on it)."),
    model: Optional[str] = typer.Option(None, "--model", help="The student's family: gpt, lstm, gru, rnn, fnet (any; it need not be the teacher's)."),
    data: Optional[str] = typer.Option(None, "--data", help="Training data (default: the teacher's)."),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="Weight of the data's cross-entropy; 1 - alpha goes to the teacher's soft targets (default 0.5)."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Softens teacher and student distributions in the KL term (default 2)."),
    adv_weight: Optional[float] = typer.Option(None, "--adv-weight", help="Weight of an adversarial critic's signal through Gumbel-softmax (default 0: none)."),
    cache_topk: Optional[int] = typer.Option(None, "--cache-topk", help="Run the teacher once and keep its K largest logits per token on disk (big teachers)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Optimizer steps to train for."),
    max_time: Optional[float] = typer.Option(None, "--max-time", help="Stop after this many seconds of training."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Sequences per step."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu or cuda."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for initialization, data split and batches."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the training forward: a slower start (tens of seconds), faster steps; falls back to eager with a warning where no compiler works."),
    log: Optional[str] = typer.Option(None, "--log", help="Also log to experiment trackers: tensorboard, mlflow or both (tensorboard,mlflow); docs/tracking.md."),
    config: Optional[Path] = typer.Option(None, "--config", help="A TOML run config for the student; flags override it."),
    set_: list[str] = typer.Option([], "--set", help="Any config field of the student: --set model.n_layer=2 (repeatable)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete what --out holds and start afresh instead of resuming."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    threads: str = threads_option(),
) -> None:
    """Train a student run from a teacher run's soft targets (knowledge distillation), optionally with a critic."""
    # Long because typer declares each option in the signature; the body only builds the config.
    from genlab.core.config import build_config, load_config
    from genlab.core.runs import RunDir

    from genlab.core.errors import GenlabError

    options = {k: v for k, v in (("alpha", alpha), ("temperature", temperature), ("adv_weight", adv_weight),
                                 ("cache_topk", cache_topk)) if v is not None}
    if teacher.startswith("remote:"):  # the student trains on the teacher's samples, and on its top_logprobs
        from genlab.datasets.named import cache_dir
        from genlab.core.errors import check_range
        from genlab.tasks.remote import soft_targets_offered, teacher_corpus

        check_range("--teacher-samples", teacher_samples, 1, 1_000_000)
        check_range("--teacher-logprobs", teacher_logprobs, 0, 5)
        if data is not None:
            raise GenlabError("--data: a remote teacher's student learns from the teacher's samples, not from other data")
        for flag in ("cache_topk", "adv_weight"):
            if flag in options:
                raise GenlabError(f"--{flag.replace('_', '-')}: not with a remote teacher (its soft targets are its "
                                  "top_logprobs: --teacher-logprobs)")
        corpus = teacher_corpus(teacher, teacher_samples, 256, seed or 0, cache_dir(), progress=not quiet)
        base = {"task": "text", "data": {"source": str(corpus)}}
        if teacher_logprobs and soft_targets_offered(teacher, corpus, teacher_logprobs):
            base["distill"] = {"teacher": teacher, "cache_topk": teacher_logprobs + 1, **options}
        elif options:
            raise GenlabError(f"--{next(iter(options)).replace('_', '-')}: this remote teacher gives samples, not "
                              "soft targets; its student learns from them as from data")
        data = None
    elif teacher.startswith("hf:"):  # a local Hugging Face causal LM: text (or code) of the user's choosing
        if data is None:
            raise GenlabError("--data: a Hugging Face teacher brings no data set; name the student's data")
        base = {"task": "text", "distill": {"teacher": teacher, **options}}
    else:
        taught = load_config(RunDir(teacher).require().config)
        base = {"task": taught.task, "distill": {"teacher": teacher, **options}}
        if data is None:  # the teacher's own data, read the same way
            base["data"] = taught.data.model_dump(mode="json")
            data = taught.data.source
    flags = dict(data=data, model=model, out=out, max_steps=max_steps, max_time=max_time, batch_size=batch_size,
                 lr=lr, device=device, seed=seed, compile=compile_ or None, log=trackers(log))
    run = train_and_report(build_config(config, flags, set_, base=base), threads, quiet, overwrite)
    if run is None:
        return
    print(f"student saved in {run.path}   next: genlab sample {run.path}   genlab compare {teacher} {run.path}")
