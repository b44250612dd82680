"""`genlab demo`: small models trained on embedded data, and what they make before and after.

Each part is a function (out_root, clock, progress) -> report.Section that prints as it goes; the demo
then writes every part's section into one page, OUT/index.html (genlab.workflows.report), to look at.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

from genlab.api import train
from genlab.core.config import validate_config
from genlab.core.files import atomic_write_json
from genlab.core.folders import claim
from genlab.datasets import resolve_source
from genlab.datasets.token_store import TokenStore
from genlab.media.audio import write_music
from genlab.media.grids import make_grid, save_png
from genlab.tasks.image import GRID_SEED
from genlab.tasks.music import chorale_opening, seconds_of
from genlab.workflows.report import Media, Section, run_section, write_page


# The models each part trains (the "before" and "after" of one run).
# Text: an LSTM, because in a minute on two cores it learns words and layout where a GPT still spells noise
# (measured: BENCHMARKS.md, "Demo").
TEXT_MODEL = {"name": "lstm", "n_layer": 2, "n_embd": 256, "block_size": 128}
IMAGE_MODEL = {"name": "ddpm", "channels": 16, "channel_mult": [1, 2], "heads": 2}  # ~0.1 s a step on one CPU core
MUSIC_MODEL = {"name": "gpt", "n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 256}
# Generated images per FID in the image part: enough to rank before against after.
DEMO_FID_SAMPLES = 500
DEFAULT_SECONDS = 60.0  # training per part when no --seconds bounds the demo
MIN_TRAINING = 2.0  # seconds: a bounded part trains at least this, however little its budget leaves


class PartClock:
    """One part's time. Bounded (`genlab demo --seconds S`): the whole part, its warm-up, samples and scores
    included, fits in S seconds of wall time; training gets what the rest leaves. Unbounded (the default):
    each part trains DEFAULT_SECONDS, and as long again where a slow or busy machine has not learned yet."""

    def __init__(self, seconds: float | None):
        self.started = time.perf_counter()
        self.bounded = seconds is not None
        self.seconds = seconds if seconds is not None else DEFAULT_SECONDS
        self.one_time = 0.0  # seconds of one-time set-up (a dataset built for the first time), outside the budget

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.started - self.one_time)

    def set_up_once(self, build, what: str):
        """Run `build()` (cached after its first run); a first, long build is kept outside the budget, saying so."""
        began = time.perf_counter()
        built = build()
        took = time.perf_counter() - began
        if self.bounded and took > 5:
            self.one_time += took
            print(f"{what} took {took:.0f} s, once (later runs read it from the cache); the part's {self.seconds:g} s "
                  "start after it", flush=True)
        return built

    def training_seconds(self, reserve: float) -> float:
        """Seconds of training, keeping `reserve` for what follows it (samples, scores)."""
        return max(MIN_TRAINING, self.left() - reserve) if self.bounded else self.seconds


def train_until_learned(tree: dict, clock: PartClock, reserve: float, progress: bool, learned):
    """Train on from the warm-up step; where `learned(results)` says the model has not learned yet (a slow or
    busy machine made few steps), an unbounded demo trains once more as long, saying why (the page should
    show learning), and a bounded one says that its budget was short."""
    seconds = clock.training_seconds(reserve)
    tree["train"] |= {"max_steps": 100_000, "max_time": seconds}
    run = train(validate_config(tree), progress=progress, continuing=True)
    if learned(run.results):
        return run
    if clock.bounded:
        print(f"only {run.results['step']} steps in {seconds:.0f} s of training, and it has not learned yet: "
              f"a longer --seconds shows more", flush=True)
        return run
    print(f"only {run.results['step']} steps in {seconds:g} s, and it has not learned yet (a slow or busy machine?): "
          f"{seconds:g} s more", flush=True)
    tree["train"] |= {"max_time": 2 * seconds}
    return train(validate_config(tree), progress=progress, continuing=True)


def _show(title: str, text: str) -> None:
    print(f"\n{title}")
    print(textwrap.indent(text.strip("\n") or "(empty)", "  | "))


def demo_text(out_root: Path, clock: PartClock, progress: bool = True) -> Section:
    """A small character-level LSTM on the standard library's docstrings (python-docs)."""
    print("== text: a small LSTM learns to write Python docstrings (python-docs, offline) ==")
    clock.set_up_once(lambda: resolve_source("python-docs", progress), "building the python-docs corpus")
    tree = {
        "task": "text",
        "out": str(out_root / "text"),
        "data": {"source": "python-docs"},
        "tokenizer": {"kind": "char"},
        "model": TEXT_MODEL,
        "train": {"max_steps": 1, "batch_size": 32, "lr": 3e-3, "warmup_steps": 50, "eval_interval": 100,
                  "checkpoint_interval": 250, "eval_batches": 10, "progress": progress},
        "sample": {"max_new_tokens": 240, "temperature": 0.8, "prompt": "Return the "},
    }
    first = train(validate_config(tree), progress=progress, overwrite=True)
    began = time.perf_counter()
    before_text = "Return the " + first.generator().generate(seed=1)[0].text
    sampling = time.perf_counter() - began
    before_bits = first.results.get("val_bits_per_char", float("nan"))
    _show(f"before training (random weights, 1 warm-up step; val {before_bits:.2f} bits/char):", before_text)
    # Same run, bigger budget: the trainer resumes from its step-1 checkpoint. Learned: half a bit per char
    # under the corpus's unigram entropy, which a model ignoring context reaches.
    unigram = unigram_bits(first.path)
    run = train_until_learned(tree, clock, 2 * sampling + 1, progress, lambda r: r.get("val_bits_per_char", 99) < unigram - 0.5)
    after_text = "Return the " + run.generator().generate(seed=1)[0].text
    after_bits = run.results.get("val_bits_per_char", float("nan"))
    heading = f"after {run.results['step']} steps ({run.results['elapsed']:.0f} s; val {after_bits:.2f} bits/char)"
    _show(heading + ":", after_text)
    print(f"\nrun: {run.path}  (loss curve: {run.path / 'loss.png'}, samples per eval: {run.path / 'samples'})")
    section = run_section(run.path, "Text: a small LSTM learns to write Python docstrings")
    section.lines.insert(0, f"val bits per char: {before_bits:.2f} before, {after_bits:.2f} after "
                            f"(the corpus's unigram entropy: {unigram:.2f})")
    section.figures = {"val_bits_per_char_before": before_bits, "val_bits_per_char_after": after_bits,
                       "unigram_bits_per_char": unigram, "steps": run.results["step"], "model": TEXT_MODEL}
    section.pairs = [(Media("text", "before training (1 warm-up step)", text=before_text), Media("text", heading, text=after_text))]
    return section


def unigram_bits(run_path: Path) -> float:
    """Bits per char of the val split under its own character frequencies: what a model that ignores context reaches."""
    import numpy as np

    counts = np.bincount(TokenStore(Path(run_path) / "data").split("val"))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def demo_image(out_root: Path, clock: PartClock, progress: bool = True) -> Section:
    """A small class-conditional diffusion model on `digits` (8x8, offline): grids and FID before and after."""
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
    before_run = train(validate_config(tree), progress=progress, overwrite=True)
    before = before_run.generator()
    began = time.perf_counter()
    save_png(make_grid(before.generate_array(40, seed=GRID_SEED), 10), folder / "before.png")
    # FID's cost is its sample count: a short demo scores fewer, so its scoring stays in proportion to its training.
    fid_samples = max(64, min(DEMO_FID_SAMPLES, int(DEMO_FID_SAMPLES * clock.seconds / DEFAULT_SECONDS)))
    if fid_samples < DEMO_FID_SAMPLES:
        print(f"FID from {fid_samples} images, not {DEMO_FID_SAMPLES}: {clock.seconds:g} s is short", flush=True)
    fid_before = before.evaluate(n=fid_samples, progress=progress)["fid"]
    scoring = time.perf_counter() - began  # the grid and FID after training cost as much (less the features' first build)
    print(f"before training (random weights, 1 warm-up step): FID (genlab features) {fid_before:.1f}; grid in {folder / 'before.png'}")
    loss_before = before_run.results.get("val_loss", float("inf"))
    run = train_until_learned(tree, clock, scoring, progress, lambda r: r.get("val_loss", float("inf")) < 0.5 * loss_before)
    after = run.generator()
    save_png(make_grid(after.generate_array(40, seed=GRID_SEED), 10), folder / "after.png")
    fid_after = after.evaluate(n=fid_samples, progress=progress)["fid"]
    print(f"after {run.results['step']} steps ({run.results['elapsed']:.0f} s): FID (genlab features) {fid_after:.1f} (lower is better); "
          f"grid in {folder / 'after.png'} (one column per digit 0-9, DDIM 50 steps)")
    print(f"run: {run.path}  (loss curve: {run.path / 'loss.png'}, one grid per eval from fixed noise: {run.path / 'samples'})")
    section = run_section(run.path, "Images: a small diffusion U-Net learns handwritten digits")
    section.lines.insert(0, f"FID (genlab features): {fid_before:.1f} before, {fid_after:.1f} after (lower is better)")
    section.figures = {"fid_genlab_features_before": fid_before, "fid_genlab_features_after": fid_after,
                       "steps": run.results["step"]}
    section.pairs = [(Media("image", "before training (1 warm-up step)", folder / "before.png", pixelated=True),
                      Media("image", f"after {run.results['step']} steps ({run.results['elapsed']:.0f} s): one column per digit",
                            folder / "after.png", pixelated=True))]
    return section


def demo_music(out_root: Path, clock: PartClock, progress: bool = True) -> Section:
    """A small GPT learns Bach chorales (offline), then continues a chorale opening for ~12 s."""
    print("== music: a small GPT learns Bach chorales and continues an opening (bach, offline) ==")
    tree = {
        "task": "music",
        "out": str(Path(out_root) / "music"),
        "data": {"source": "bach", "music": {"transpose": 3}},
        "tokenizer": {"kind": "midi"},
        "model": MUSIC_MODEL,
        "train": {"max_steps": 100_000, "batch_size": 16, "lr": 2e-3, "warmup_steps": 50,
                  "eval_interval": 250, "checkpoint_interval": 250, "eval_batches": 10, "progress": progress},
        "sample": {"temperature": 0.9, "top_k": 0, "top_p": 0.95},
    }
    chorales = clock.set_up_once(lambda: resolve_source("bach", progress), "building the Bach chorales dataset")
    # What follows training: a 12-second continuation and its files, a few seconds here.
    reserve = max(3.0, 0.2 * clock.seconds) if clock.bounded else 0.0
    tree["train"]["max_time"] = clock.training_seconds(reserve)
    run = train(validate_config(tree), progress=progress, overwrite=True)
    gen = run.generator()
    opening, name = chorale_opening(chorales)
    folder = Path(run.path) / "demo"
    prime_path = folder / "opening.mid"
    write_music(opening, prime_path, title=f"opening of {name}")
    continuation = gen.generate(prime_path, seconds=12.0, seed=1,
                                max_time=max(1.0, clock.left() - 1) if clock.bounded else None)[0]
    made = seconds_of(continuation.score) - (gen.prime_seconds(prime_path) or 0.0)
    if continuation.finish_reason == "time":
        print(f"the continuation stopped at {made:.1f} s of music, not 12: the --seconds budget ran out", flush=True)
    paths, renderer = write_music(continuation.score, folder / "continuation.mid", gen.prime_seconds(prime_path),
                                  title=f"{name}: opening + {made:.0f} s by the model")
    print(f"trained {run.results['step']} steps ({run.results['elapsed']:.0f} s), val loss {run.results.get('val_loss', float('nan')):.3f}")
    print(f"opening of {name}: {prime_path} (.png, .wav beside it)")
    print(f"continuation: {', '.join(str(p) for p in paths)}  (audio: {renderer})")
    print(f"\n{gen.describe(continuation)}")
    section = run_section(run.path, "Music: a small GPT learns Bach chorales and continues an opening")
    section.figures = {"val_loss": run.results.get("val_loss"), "steps": run.results["step"]}
    section.media = [m for m in section.media if m.kind == "image" and m.path == run.path / "loss.png"]
    section.pairs = [(Media("image", f"the opening of {name} (the prompt)", prime_path.with_suffix(".png")),
                      Media("image", f"the opening + {made:.0f} s by the model (prompt shaded)", paths[1]))]
    section.media += [Media("audio", "the opening", prime_path.with_suffix(".wav")),
                      Media("audio", f"the opening + {made:.0f} s by the model ({renderer})", paths[2])]
    return section


PARTS = {"text": demo_text, "image": demo_image, "music": demo_music}


def write_pictures(sections: dict[str, Section], dest: Path) -> list[Path]:
    """The demo's pictures for the README (docs/img): the text before and after as one image, the digit grids
    before and after (scaled up 4x, pixels kept sharp) and the continuation's piano roll."""
    from PIL import Image, ImageDraw, ImageFont

    dest.mkdir(parents=True, exist_ok=True)
    written = []
    if "text" in sections:
        (before, after), = sections["text"].pairs
        font = ImageFont.load_default(size=15)
        lines = [before.caption + ":", *textwrap.wrap(before.text, 90)[:6], "", after.caption + ":", *textwrap.wrap(after.text, 90)[:6]]
        image = Image.new("RGB", (860, 24 + 20 * len(lines)), "white")
        draw = ImageDraw.Draw(image)
        for i, line in enumerate(lines):
            draw.text((12, 12 + 20 * i), line, fill="#222" if not line.endswith(":") else "#06c", font=font)
        image.save(dest / "text_before_after.png")
        written.append(dest / "text_before_after.png")
    if "image" in sections:
        for media, name in zip(sections["image"].pairs[0], ("digits_before.png", "digits_after.png")):
            grid = Image.open(media.path)
            grid.resize((grid.width * 4, grid.height * 4), Image.NEAREST).save(dest / name)
            written.append(dest / name)
    if "music" in sections:
        roll = sections["music"].pairs[0][1].path
        Image.open(roll).save(dest / "piano_roll.png")
        written.append(dest / "piano_roll.png")
    return written


def run_demo(out_root: Path, parts: list[str], seconds: float | None = None, progress: bool = True,
             pictures: Path | None = None) -> Path:
    """Run the parts; returns the page that shows them (OUT/index.html). `seconds`: each part's whole wall
    time (PartClock; None: DEFAULT_SECONDS of training each, more where it has not learned). With `pictures`,
    also writes the README's pictures there (`genlab demo --pictures docs/img`)."""
    claim(out_root, "demo")  # a genlab folder; each part resumes (or replaces) its runs inside it
    started = time.perf_counter()
    sections = {}
    for name in parts:
        clock = PartClock(seconds)
        sections[name] = PARTS[name](Path(out_root), clock, progress)
        took = time.perf_counter() - clock.started
        sections[name].figures["wall_seconds"] = round(took, 1)
        budget = f"a budget of {seconds:g} s" if clock.bounded else "no budget given"
        sections[name].figures["one_time_seconds"] = round(clock.one_time, 1)
        if clock.one_time:
            budget += f"; {clock.one_time:.0f} s of it a one-time dataset build"
        sections[name].lines.append(f"this part took {took:.0f} s of wall time ({budget})")
        print(f"\n== {name}: {took:.0f} s in all, training, data, samples and scores ({budget}) ==")
    per_part = f"at most {seconds:g} s each" if seconds is not None else f"about {DEFAULT_SECONDS:g} s of training each"
    page = write_page(Path(out_root) / "index.html", "genlab demo: small models, trained here, offline",
                      f"{', '.join(parts)}: {per_part}; {time.perf_counter() - started:.0f} s in all",
                      list(sections.values()))

    atomic_write_json(Path(out_root) / "summary.json", {"seconds_per_part": seconds or DEFAULT_SECONDS, "bounded": seconds is not None, "wall_seconds": round(time.perf_counter() - started, 1),
                                                        **{name: section.figures for name, section in sections.items()}})
    print(f"\nthe demo as a page: {page}")
    if pictures is not None:
        print(f"pictures for the README: {', '.join(str(p) for p in write_pictures(sections, Path(pictures)))}")
    return page
