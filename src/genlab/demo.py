"""`genlab demo`: small models trained on embedded data, and what they make before and after.

Each part is a function (out_root, seconds, progress) -> None that prints as it goes.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from genlab.config import validate_config


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
        "model": {"name": "gpt", "n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 128},
        "train": {"max_steps": 1, "batch_size": 32, "lr": 2e-3, "warmup_steps": 50, "eval_interval": 250,
                  "checkpoint_interval": 250, "eval_batches": 10, "progress": progress},
        "sample": {"max_new_tokens": 240, "temperature": 0.8, "prompt": "Return the "},
    }
    before = train(validate_config(tree), progress=progress, overwrite=True).generator()
    _show("before training (random weights, 1 warm-up step):", "Return the " + before.generate(seed=1))
    # Same run, bigger budget: the trainer resumes from its step-1 checkpoint.
    tree["train"] |= {"max_steps": 100_000, "max_time": seconds}
    run = train(validate_config(tree), progress=progress)
    after = run.generator()
    _show(f"after {run.results['step']} steps ({run.results['elapsed']:.0f} s, val loss {run.results.get('val_loss', float('nan')):.3f}):",
          "Return the " + after.generate(seed=1))
    print(f"\nrun: {run.path}  (loss curve: {run.path / 'loss.png'}, samples per eval: {run.path / 'samples'})")


def demo_image(out_root: Path, seconds: float, progress: bool = True) -> None:
    from genlab.tasks.image import demo

    demo(out_root, seconds, progress)


def demo_music(out_root: Path, seconds: float, progress: bool = True) -> None:
    from genlab.tasks.music import demo

    demo(out_root, seconds, progress)


PARTS = {"text": demo_text, "image": demo_image, "music": demo_music}


def run_demo(out_root: Path, parts: list[str], seconds: float, progress: bool = True) -> None:
    from genlab.folders import claim

    claim(out_root, "demo")  # a genlab folder; each part resumes (or replaces) its runs inside it
    for name in parts:
        PARTS[name](Path(out_root), seconds, progress)
