"""`genlab demo`: small models trained on embedded data, and what they make before and after.

Each part is a function (out_root, seconds, progress) -> None that prints as it goes.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from genlab.config import validate_config


# The models each part trains (the "before" and "after" of one run).
TEXT_MODEL = {"name": "gpt", "n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 128}
IMAGE_MODEL = {"name": "ddpm", "channels": 16, "channel_mult": [1, 2], "heads": 2}  # ~0.1 s a step on one CPU core
MUSIC_MODEL = {"name": "gpt", "n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 256}
# Generated images per FID in the image part: enough to rank before against after.
DEMO_FID_SAMPLES = 500


def _show(title: str, text: str) -> None:
    print(f"\n{title}")
    print(textwrap.indent(text.strip("\n") or "(empty)", "  | "))


def demo_text(out_root: Path, seconds: float, progress: bool = True) -> None:
    """A small character-level GPT on the standard library's docstrings (python-docs)."""
    from genlab.api import train

    print("== text: a small GPT learns to write Python docstrings (python-docs, offline) ==")
    tree = {
        "task": "text",
        "out": str(out_root / "text"),
        "data": {"source": "python-docs"},
        "tokenizer": {"kind": "char"},
        "model": TEXT_MODEL,
        "train": {"max_steps": 1, "batch_size": 32, "lr": 2e-3, "warmup_steps": 50, "eval_interval": 250,
                  "checkpoint_interval": 250, "eval_batches": 10, "progress": progress},
        "sample": {"max_new_tokens": 240, "temperature": 0.8, "prompt": "Return the "},
    }
    before = train(validate_config(tree), progress=progress, overwrite=True).generator()
    _show("before training (random weights, 1 warm-up step):", "Return the " + before.generate(seed=1)[0].text)
    # Same run, bigger budget: the trainer resumes from its step-1 checkpoint.
    tree["train"] |= {"max_steps": 100_000, "max_time": seconds}
    run = train(validate_config(tree), progress=progress)
    after = run.generator()
    _show(f"after {run.results['step']} steps ({run.results['elapsed']:.0f} s, val loss {run.results.get('val_loss', float('nan')):.3f}):",
          "Return the " + after.generate(seed=1)[0].text)
    print(f"\nrun: {run.path}  (loss curve: {run.path / 'loss.png'}, samples per eval: {run.path / 'samples'})")


def demo_image(out_root: Path, seconds: float, progress: bool = True) -> None:
    """A small class-conditional diffusion model on `digits` (8x8, offline): grids and FID before and after."""
    from genlab.api import train
    from genlab.grids import make_grid, save_png
    from genlab.tasks.image import GRID_SEED

    print("== image: a small diffusion U-Net learns handwritten digits (digits, 8x8, offline) ==")
    folder = Path(out_root) / "image"
    tree = {
        "task": "image",
        "out": str(folder / "run"),
        "data": {"source": "digits", "val_fraction": 0.1},
        "model": IMAGE_MODEL,
        "train": {"max_steps": 1, "batch_size": 64, "eval_interval": 500, "checkpoint_interval": 500, "eval_batches": 3,
                  "progress": progress},
    }
    before = train(validate_config(tree), progress=progress, overwrite=True).generator()
    save_png(make_grid(before.generate_array(40, seed=GRID_SEED), 10), folder / "before.png")
    fid_before = before.evaluate(n=DEMO_FID_SAMPLES, progress=progress)["fid"]
    print(f"before training (random weights, 1 warm-up step): FID (genlab features) {fid_before:.1f}; grid in {folder / 'before.png'}")
    tree["train"] |= {"max_steps": 100_000, "max_time": seconds}
    run = train(validate_config(tree), progress=progress)
    after = run.generator()
    save_png(make_grid(after.generate_array(40, seed=GRID_SEED), 10), folder / "after.png")
    fid_after = after.evaluate(n=DEMO_FID_SAMPLES, progress=progress)["fid"]
    print(f"after {run.results['step']} steps ({run.results['elapsed']:.0f} s): FID (genlab features) {fid_after:.1f} (lower is better); "
          f"grid in {folder / 'after.png'} (one column per digit 0-9, DDIM 50 steps)")
    print(f"run: {run.path}  (loss curve: {run.path / 'loss.png'}, one grid per eval from fixed noise: {run.path / 'samples'})")


def demo_music(out_root: Path, seconds: float, progress: bool = True) -> None:
    """A small GPT learns Bach chorales (offline), then continues a chorale opening for ~12 s."""
    from genlab.api import train
    from genlab.audio import write_music
    from genlab.datasets import resolve_source
    from genlab.tasks.music import chorale_opening

    print("== music: a small GPT learns Bach chorales and continues an opening (bach, offline) ==")
    tree = {
        "task": "music",
        "out": str(Path(out_root) / "music"),
        "data": {"source": "bach", "music": {"transpose": 3}},
        "tokenizer": {"kind": "midi"},
        "model": MUSIC_MODEL,
        "train": {"max_steps": 100_000, "max_time": seconds, "batch_size": 16, "lr": 2e-3, "warmup_steps": 50,
                  "eval_interval": 250, "checkpoint_interval": 250, "eval_batches": 10, "progress": progress},
        "sample": {"temperature": 0.9, "top_k": 0, "top_p": 0.95},
    }
    run = train(validate_config(tree), progress=progress, overwrite=True)
    gen = run.generator()
    opening, name = chorale_opening(resolve_source("bach", progress))
    folder = Path(run.path) / "demo"
    prime_path = folder / "opening.mid"
    write_music(opening, prime_path, title=f"opening of {name}")
    continuation = gen.generate(prime_path, seconds=12.0, seed=1)[0]
    paths, renderer = write_music(continuation.score, folder / "continuation.mid", gen.prime_seconds(prime_path),
                                  title=f"{name}: opening + 12 s by the model")
    print(f"trained {run.results['step']} steps ({run.results['elapsed']:.0f} s), val loss {run.results.get('val_loss', float('nan')):.3f}")
    print(f"opening of {name}: {prime_path} (.png, .wav beside it)")
    print(f"continuation: {', '.join(str(p) for p in paths)}  (audio: {renderer})")
    print(f"\n{gen.describe(continuation)}")


PARTS = {"text": demo_text, "image": demo_image, "music": demo_music}


def run_demo(out_root: Path, parts: list[str], seconds: float, progress: bool = True) -> None:
    from genlab.folders import claim

    claim(out_root, "demo")  # a genlab folder; each part resumes (or replaces) its runs inside it
    for name in parts:
        PARTS[name](Path(out_root), seconds, progress)
