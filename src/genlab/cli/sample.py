"""`genlab sample RUN`: make things with a trained run (or a local Hugging Face model, `hf:PATH`)."""

from __future__ import annotations

# Commands import the engines they run inside their bodies, on purpose: `genlab --help` and a bad flag answer
# at once, before torch (seconds) loads.

import inspect
import random
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from genlab.cli.root import app, threads_option, use_threads
from genlab.core.errors import GenlabError, check_range
from genlab.core.files import atomic_write_text
from genlab.core.folders import check_output_file, claim


@app.command(no_args_is_help=True)
def sample(
    run: str = typer.Argument(..., help="A run directory, or hf:PATH for a local Hugging Face causal LM."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Text to continue (text and code), or to draw (text-conditioned image runs)."),
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
    class_label: Optional[str] = typer.Option(None, "--class", help="Class to generate: a number (image runs), or a class name or number (conditioned audio runs)."),
    guidance: Optional[float] = typer.Option(None, "--guidance", help="Classifier-free guidance scale (diffusion)."),
    interpolate: bool = typer.Option(False, "--interpolate", help="A latent interpolation strip between two seeds (GAN/VAE)."),
    truncation: Optional[float] = typer.Option(None, "--truncation", help="stylegan: pull w towards the average (psi in [0, 1]; 0.7 trades variety for fewer failures)."),
    style_mix: bool = typer.Option(False, "--style-mix", help="stylegan: a style-mixing grid (coarse styles from each row, fine from each column)."),
    prime: Optional[Path] = typer.Option(None, "--prime", help="A MIDI file (music) or sound file (audio) to continue."),
    seconds: Optional[float] = typer.Option(None, "--seconds", help="Length of music or sound to generate, in seconds."),
    bars: Optional[int] = typer.Option(None, "--bars", help="Length of music to generate, in bars."),
    max_time: Optional[float] = typer.Option(None, "--max-time", help="Stop generating after this many seconds of wall time and write what there is (text, code, music, audio)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    threads: str = threads_option(),
) -> None:
    """Generate samples: text to the terminal or a file, image grids, MIDI with piano roll and audio."""
    use_threads(threads)
    from genlab.api import load
    from genlab.core.config import validate_sample_options

    check_range("--n", n, 1, 10_000)
    validate_sample_options(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                            repetition_penalty=repetition_penalty)
    stop = [unescape(s) for s in stop]
    gen = load(run, device=device)
    options = dict(prompt=prompt, n=n, seed=seed, out=out, max_new_tokens=max_new_tokens, temperature=temperature,
                   top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty, stop=stop or None, stream=stream,
                   steps=steps, sampler=sampler, class_label=class_label, guidance=guidance,
                   interpolate=interpolate or None, truncation=truncation, style_mix=style_mix or None, prime=prime,
                   seconds=seconds, bars=bars, max_time=max_time)
    if max_time is not None and not 0 < max_time < float("inf"):
        raise GenlabError(f"--max-time: must be a positive number of seconds, not {max_time}")
    options = {k: v for k, v in options.items() if v is not None}
    writer = WRITERS.get(gen.modality)
    if writer is None:
        raise GenlabError(f"{run}: a {gen.modality} run does not generate; try genlab search or genlab embed")
    accepted = inspect.signature(writer).parameters
    for name in options:
        if name not in accepted:
            flag = "--class" if name == "class_label" else "--" + name.replace("_", "-")
            raise GenlabError(f"{flag} does not apply to {gen.modality} runs")
    writer(gen, **options)


def write_text(gen, prompt: str | None = None, n: int = 1, seed: int | None = None, out: Path | None = None,
               stop: list[str] | None = None, stream: bool | None = None, max_new_tokens: int | None = None,
               temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
               repetition_penalty: float | None = None, max_time: float | None = None) -> None:
    """Text and code: print (streaming when there is one sample) and optionally save."""
    prompt = prompt if prompt is not None else gen.config.sample.prompt
    decoding = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                    repetition_penalty=repetition_penalty, max_time=max_time)
    if stream is None:
        stream = n == 1 and out is None
    if stream and n == 1:
        t0 = time.perf_counter()
        pieces = iter(gen.stream(prompt, seed=seed, stop=stop, **decoding))
        sys.stdout.write(prompt + next(pieces, ""))  # an error (a remote server's refusal) comes before any output
        sys.stdout.flush()
        for piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        if max_time is not None and time.perf_counter() - t0 >= max_time:
            say_stopped_for_time(max_time, "the sample")
        return
    samples = gen.generate(prompt, n=n, seed=seed, stop=stop, **decoding)
    if any(s.finish_reason == "time" for s in samples):
        say_stopped_for_time(max_time, f"{sum(s.finish_reason == 'time' for s in samples)} of {n} samples")
    rendered = [s.full_text for s in samples]
    body = "\n\n".join(f"--- sample {i + 1} ---\n{t}" for i, t in enumerate(rendered)) if n > 1 else rendered[0]
    if out is not None:
        check_output_file(out, "text")
        atomic_write_text(Path(out), body + "\n")
        print(f"wrote {n} sample{'s' if n > 1 else ''} to {out}", file=sys.stderr)
    else:
        print(body)


def say_stopped_for_time(max_time: float, what: str) -> None:
    print(f"{what} stopped at --max-time {max_time:g} s, shorter than asked", file=sys.stderr)


def write_images(gen, n: int = 16, seed: int | None = None, out: Path | None = None, steps: int | None = None,
                 sampler: str | None = None, class_label: str | None = None, guidance: float | None = None,
                 interpolate: bool | None = None, truncation: float | None = None, style_mix: bool | None = None,
                 prompt: str | None = None) -> None:
    """Images: a grid PNG plus one PNG per image in a folder beside it, or with --interpolate a strip of
    n frames between seeds `seed` and `seed + 1`, or (stylegan) with --style-mix the style-mixing grid."""
    from genlab.media.grids import make_grid, save_png

    if class_label is not None:
        if not class_label.lstrip("-").isdigit():
            raise GenlabError(f"--class: image runs take a class number, not {class_label!r}")
        class_label = int(class_label)

    gen.check_condition(class_label, prompt)  # before anything is written
    seed = seed if seed is not None else random.randrange(1 << 31)
    out = Path(out) if out is not None else (gen.run.path if gen.run is not None else Path(".")) / f"sample_seed{seed}.png"
    if out.suffix.lower() != ".png":
        raise GenlabError(f"--out {out}: image samples are written as .png")
    check_output_file(out, "png")
    if interpolate:
        frames = gen.interpolate(seed, seed + 1, max(n, 2), class_label, steps, guidance)
        save_png(make_grid(frames, len(frames)), out)
        print(f"wrote an interpolation strip of {len(frames)} frames (seed {seed} -> {seed + 1}) to {out}", file=sys.stderr)
        return
    if style_mix:
        rows, columns = 4, 6
        grid = gen.style_mix(rows, columns, seed, class_label, truncation)
        save_png(make_grid(grid, columns + 1), out)
        print(f"wrote a style-mixing grid to {out}: across the top {columns} column sources, down the left {rows} row "
              "sources; each cell has its row's coarse styles and its column's fine ones", file=sys.stderr)
        return
    folder = out.with_suffix("")
    claim(folder, "samples")  # the folder of single images beside the grid
    t0 = time.perf_counter()
    samples = gen.generate(n, seed, class_label, steps, sampler, guidance, progress=True, truncation=truncation, prompt=prompt)
    seconds = time.perf_counter() - t0
    pixels = np.stack([s.pixels for s in samples])
    save_png(make_grid(pixels, gen.grid_columns(n)), out)
    for i, im in enumerate(pixels):
        save_png(make_grid(im[None], 1, pad=0, min_tile=0), folder / f"{i:04d}.png")
    print(f"wrote a grid of {n} images to {out} and each image to {folder}/ ({n / seconds:.1f} images/s)", file=sys.stderr)


def write_music(gen, n: int = 1, seed: int | None = None, out: Path | None = None, prime: Path | None = None,
                seconds: float | None = None, bars: int | None = None, max_new_tokens: int | None = None,
                temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                repetition_penalty: float | None = None, max_time: float | None = None) -> None:
    """Music: OUT.mid, OUT.png (piano roll) and OUT.wav per sample (OUT_1.mid, OUT_2.mid, ... when n > 1);
    OUT defaults to RUN/samples/sample.mid."""
    from genlab.media.audio import write_music as write_files
    from genlab.tasks.music import seconds_of

    out = Path(out) if out is not None else gen.run.samples / "sample.mid"
    dests = [out if n == 1 else out.with_name(f"{out.stem}_{i}{out.suffix or '.mid'}") for i in range(1, n + 1)]
    for dest in dests:  # before generating: a refused --out costs nothing
        for suffix, kind in ((".mid", "midi"), (".png", "png"), (".wav", "wav")):
            check_output_file(dest.with_suffix(suffix), kind)
    samples = gen.generate(prime, n=n, seed=seed, seconds=seconds, bars=bars, max_new_tokens=max_new_tokens,
                           temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
                           max_time=max_time)
    prime_seconds = gen.prime_seconds(prime)
    title = f"{gen.run.path.name}: " + (f"continuation of {Path(prime).name}" if prime else "from scratch")
    for dest, sample in zip(dests, samples):
        if sample.finish_reason == "cap":
            print(f"warning: {dest.name} stopped at the token cap before the asked length", file=sys.stderr)
        if sample.finish_reason == "time":
            say_stopped_for_time(max_time, dest.name)
        paths, renderer = write_files(sample.score, dest, prime_seconds, title)
        print(f"wrote {', '.join(str(p) for p in paths)}  ({seconds_of(sample.score):.1f} s, {sample.score.note_num()} notes; "
              f"audio: {renderer})", file=sys.stderr)


def write_audio(gen, n: int = 1, seed: int | None = None, out: Path | None = None, prime: Path | None = None,
                seconds: float | None = None, max_new_tokens: int | None = None, class_label: str | None = None,
                temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                max_time: float | None = None) -> None:
    """Audio: OUT.wav and OUT.png (spectrogram) per sample (OUT_1.wav, ... when n > 1); OUT defaults to
    RUN/samples/sample.wav; one second of sound when neither --seconds nor --max-new-tokens is given."""
    out = Path(out) if out is not None else gen.run.samples / "sample.wav"
    dests = [out if n == 1 else out.with_name(f"{out.stem}_{i}{out.suffix or '.wav'}") for i in range(1, n + 1)]
    for dest in dests:  # before generating: a refused --out costs nothing
        for suffix, kind in ((".wav", "wav"), (".png", "png")):
            check_output_file(dest.with_suffix(suffix), kind)
    if seconds is None and max_new_tokens is None:
        seconds = 1.0
    t0 = time.perf_counter()
    samples = gen.generate(prime, n=n, seed=seed, seconds=seconds, max_new_tokens=max_new_tokens, class_label=class_label,
                           temperature=temperature, top_k=top_k, top_p=top_p, progress=True, max_time=max_time)
    made = sum(len(s.audio) - s.prime_samples for s in samples) / gen.sample_rate
    took = time.perf_counter() - t0
    for dest, sample in zip(dests, samples):
        paths = gen.save_sample(sample, dest)
        print(f"wrote {', '.join(str(p) for p in paths)}  ({len(sample.audio) / sample.sample_rate:.2f} s at "
              f"{sample.sample_rate} Hz{f', the first {sample.prime_samples / sample.sample_rate:.2f} s the prime' if sample.prime_samples else ''})",
              file=sys.stderr)
        if sample.finish_reason == "time":
            say_stopped_for_time(max_time, dest.name)
    print(f"generated {made:.2f} s of sound in {took:.1f} s ({made / took:.3f} s of sound per second)", file=sys.stderr)


# modality -> how `genlab sample` writes it; a writer's keyword parameters are exactly the options it accepts
WRITERS = {"text": write_text, "code": write_text, "music": write_music, "audio": write_audio, "image": write_images}


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
