"""`genlab eval RUN`: the run's numbers on held-out data, as a table and JSON."""

from __future__ import annotations

# Commands import the engines they run inside their bodies, on purpose: `genlab --help` and a bad flag answer
# at once, before torch (seconds) loads.

from pathlib import Path
from typing import Optional

import typer

from genlab.cli.root import app, threads_option, use_threads


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
    n: Optional[int] = typer.Option(None, "--n", help="Samples to generate for the metrics (images: default min(real, 2000))."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Diffusion sampling steps for the generated images."),
    truncation: Optional[float] = typer.Option(None, "--truncation", help="stylegan: psi of the truncation trick for the generated images."),
    c2st: bool = typer.Option(False, "--c2st", help="Text: a classifier two-sample test of held-out text against the model's continuations of it (accuracy 0.5 = indistinguishable), with distinct-n and repetition of each; --n texts (200)."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="With --c2st: the sampling temperature, the same for every model compared (default 1: the model's own distribution)."),
    fid_features: Optional[Path] = typer.Option(None, "--fid-features", help="A TorchScript Inception feature file for FID/KID comparable with published figures (default: genlab's own small classifier; docs/images.md)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    threads: str = threads_option(),
) -> None:
    """Evaluate a run: loss, bits per char/byte, perplexity and diversity (text, code); music metrics; FID/KID (images)."""
    use_threads(threads)
    import inspect

    from genlab.api import load
    from genlab.core.errors import GenlabError, check_range
    from genlab.core.files import atomic_write_json

    gen = load(run, device=device)
    accepted = inspect.signature(gen.evaluate).parameters
    options = {}
    if n is not None:
        check_range("--n", n, 1, 100_000)
        name = "n" if "n" in accepted else "samples" if "samples" in accepted else None
        if name is None:
            raise GenlabError(f"--n does not apply to this run ({type(gen).__name__})")
        options[name] = n
    if temperature is not None and not c2st:
        raise GenlabError("--temperature: only with --c2st (the texts it samples)")
    if temperature is not None:
        check_range("--temperature", temperature, 0.05, 5.0)
    for flag, name, value in (("--steps", "steps", steps), ("--fid-features", "features", fid_features),
                              ("--truncation", "truncation", truncation), ("--c2st", "c2st", c2st or None),
                              ("--temperature", "temperature", temperature)):
        if value is not None:
            if name not in accepted:
                raise GenlabError(f"{flag} does not apply to this run ({type(gen).__name__})")
            options[name] = str(value) if isinstance(value, Path) else value
    results = gen.evaluate(data=data, seed=seed, **options)
    print_table(results)
    if out is None and str(run).startswith("hf:"):  # not a genlab folder: nothing is written into it
        print("(a Hugging Face model: pass --out FILE.json to keep these numbers)")
        return
    dest = out or Path(run) / "eval.json"
    replaced = " (replacing the earlier one: --out FILE keeps both)" if dest.exists() else ""
    atomic_write_json(dest, results)
    print(f"wrote {dest}{replaced}")
