"""`genlab sample RUN`: make things with a trained run (or a local Hugging Face model, `hf:PATH`)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Optional

import typer

from genlab.cli.root import app
from genlab.errors import GenlabError, check_range


@app.command(no_args_is_help=True)
def sample(
    run: str = typer.Argument(..., help="A run directory, or hf:PATH for a local Hugging Face causal LM."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Text to continue (text and code)."),
    n: int = typer.Option(1, "--n", help="How many samples."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Same seed, same output."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the samples here (text file, image grid PNG, or .mid)."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help="Tokens to generate."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="0 = greedy; higher = more random."),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="Draw only from the k likeliest tokens (0 = off)."),
    top_p: Optional[float] = typer.Option(None, "--top-p", help="Draw only from the smallest set with this much probability (1 = off)."),
    repetition_penalty: Optional[float] = typer.Option(None, "--repetition-penalty", help=">1 discourages repeating tokens."),
    stop: list[str] = typer.Option([], "--stop", help=r"Stop at this string (repeatable); \n, \t and \\ are unescaped as printf does."),
    stream: Optional[bool] = typer.Option(None, "--stream/--no-stream", help="Print text as it is generated (default with one sample)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Diffusion sampling steps (images)."),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="ddpm or ddim (diffusion)."),
    class_label: Optional[int] = typer.Option(None, "--class", help="Class to generate (class-conditional image runs)."),
    guidance: Optional[float] = typer.Option(None, "--guidance", help="Classifier-free guidance scale (diffusion)."),
    interpolate: bool = typer.Option(False, "--interpolate", help="A latent interpolation strip between two seeds (GAN/VAE)."),
    prime: Optional[Path] = typer.Option(None, "--prime", help="A MIDI file to continue (music)."),
    seconds: Optional[float] = typer.Option(None, "--seconds", help="Length of music to generate, in seconds."),
    bars: Optional[int] = typer.Option(None, "--bars", help="Length of music to generate, in bars."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
) -> None:
    """Generate samples: text to the terminal or a file, image grids, MIDI with piano roll and audio."""
    from genlab.api import load
    from genlab.config import validate_sample_options

    check_range("--n", n, 1, 10_000)
    validate_sample_options(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                            repetition_penalty=repetition_penalty)
    stop = [unescape(s) for s in stop]
    gen = load(run, device=device)
    options = dict(prompt=prompt, n=n, seed=seed, out=out, max_new_tokens=max_new_tokens, temperature=temperature,
                   top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty, stop=stop or None, stream=stream,
                   steps=steps, sampler=sampler, class_label=class_label, guidance=guidance,
                   interpolate=interpolate or None, prime=prime, seconds=seconds, bars=bars)
    options = {k: v for k, v in options.items() if v is not None}
    accepted = inspect.signature(gen.sample_command).parameters
    for name in options:
        if name not in accepted:
            flag = "--class" if name == "class_label" else "--" + name.replace("_", "-")
            raise GenlabError(f"{flag} does not apply to this run ({type(gen).__name__})")
    gen.sample_command(**options)


def unescape(text: str) -> str:
    r"""`\n`, `\t`, `\r` and `\\` in a command-line string become the characters they name, as printf
    does, so `--stop "\n\n"` stops at a blank line; any other backslash stays as it is."""
    out, i = [], 0
    table = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in table:
            out.append(table[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)
