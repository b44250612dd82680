"""Compare runs on the same data and split: one table and one plot.

    compare(["runs/gpt", "recipes/tinyshakespeare-lstm.toml"], out="runs/compare", max_time=180)

Each item is a finished run directory (read) or a TOML run config (trained
first, into out/<name>; a config whose run already exists there is resumed,
so asking again costs nothing). Every run is then measured the same way:
parameters, loss and bits per char over the whole validation split, training
tokens/s (median of the logged rates), sampling tokens/s at batch 1, and
training wall time. The runs must share data and split, or their losses are
not comparable: that is checked from their token stores.

Image runs (GAN, DCGAN, StyleGAN, VAE, DDPM, PixelCNN) are measured by what
they share, the images they make: FID, KID, precision and recall of the same
number of generated images against the same real ones, training and sampling
images/s, and wall time; the plot is their FID side by side.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from genlab.api import load, train
from genlab.core.config import build_config, config_to_toml, load_config, validate_config
from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write_json, atomic_write_text
from genlab.core.folders import claim
from genlab.core.generators import UNFILTERED
from genlab.core.runs import RunDir
from genlab.datasets.token_store import TokenStore
from genlab.media.plots import new_figure, save_figure
from genlab.sampling.endpoint import PREFIX as REMOTE, parse_remote
from genlab.sampling.engine import decode
from genlab.tasks.remote import RemoteGenerator
from genlab.tokenizers import load_tokenizer

COLUMNS = [  # (key, heading, format)
    ("name", "run", "{}"),
    ("family", "family", "{}"),
    ("params", "params", "{:,}"),
    ("val_loss", "val loss", "{:.4f}"),
    ("val_bits_per_unit", "val bits/unit", "{:.4f}"),
    ("train_tokens_per_s", "train tok/s", "{:,.0f}"),
    ("sample_tokens_per_s", "sample tok/s", "{:,.0f}"),
    ("wall_s", "train wall s", "{:.1f}"),
]


def train_configs(items: list[str], out: Path, data: str | None, max_time: float | None, sets: list[str], progress: bool) -> list[Path]:
    """Train (or resume) the run of each TOML config in `items` into out/<config stem>; run dirs pass through."""
    runs = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            runs.append(path)
            continue
        flags = {"data": data, "max_time": max_time, "out": str(out / path.stem)}
        config = build_config(path, flags, sets)
        config.train.progress = progress
        if progress:
            print(f"training {path.stem} ({config.model.name}) -> {config.out}")
        train(config, progress=progress)
        runs.append(Path(config.out))
    return runs


def family_configs(models: list[str], out: Path, task: str) -> list[Path]:
    """A TOML config per family name, with the family's defaults, written to out/configs/<family>.toml."""
    paths = []
    for family in models:
        config = validate_config({"task": task, "model": {"name": family}}, f"--models {family}")
        path = out / "configs" / f"{family}.toml"
        atomic_write_text(path, config_to_toml(config))
        paths.append(path)
    return paths


IMAGE_COLUMNS = [
    ("name", "run", "{}"),
    ("family", "family", "{}"),
    ("params", "params", "{:,}"),
    ("fid", "FID", "{:.2f}"),
    ("kid", "KID x1000", "{:.2f}"),
    ("precision", "precision", "{:.3f}"),
    ("recall", "recall", "{:.3f}"),
    ("train_images_per_s", "train img/s", "{:,.0f}"),
    ("sampling_images_per_s", "sample img/s", "{:,.1f}"),
    ("wall_s", "train wall s", "{:.1f}"),
]
REMOTE_VAL_CHARS = 8_000  # of the val split, scored through a remote model's prompt logprobs
IMAGE_SAMPLES = 256  # generated images per FID in an image comparison: the same for every run, or FIDs differ by n


def _split_signature(run: RunDir) -> dict:
    header = run.data / "header.json"
    if not header.is_file():
        raise GenlabError(f"{run.path}: no data store (data/header.json); is it a finished run?")
    h = json.loads(header.read_text())
    if "splits" not in h:  # an image store: the same images, split the same way
        return {"sha256": h["sha256"], "shape": h["shape"], "val": h["val"]}
    return {"seed": h["seed"], "units": {k: v["units"] for k, v in h["splits"].items()}}


def measure(run_path: Path, device: str = "cpu", sample_tokens: int = 200, draws: int = 1) -> dict:
    """One row of the table for a finished sequence run; sampling speed is the best of `draws` draws at batch 1."""
    run = RunDir(run_path).require()
    config = load_config(run.config)
    gen = load(run.path, device=device)
    r = gen.perplexity_of(TokenStore(run.data).split("val"))
    rows = run.read_metrics()
    rates = [row["tok_per_s"] for row in rows if "tok_per_s" in row and row.get("step", 0) > 1]
    sample_rate = 0.0
    for seed in range(draws):  # the model's own decoding speed: tokens, no text assembled
        engine = gen.engine(text=False)
        start = time.perf_counter()
        (slot,) = decode(engine, gen.requests("", 1, seed, [], max_new_tokens=sample_tokens, **UNFILTERED))
        sample_rate = max(sample_rate, len(engine.tokens(slot)) / (time.perf_counter() - start))
    return {
        "name": run.path.name,
        "path": str(run.path),
        "family": config.model.label(),
        "params": gen.parameter_count,
        "val_loss": r["loss"],
        "val_bits_per_unit": r["bits_per_unit"],
        "unit": gen.tokenizer.unit,
        "train_tokens_per_s": statistics.median(rates) if rates else None,
        "sample_tokens_per_s": sample_rate,
        "wall_s": max((row.get("elapsed", 0.0) for row in rows), default=0.0),
        "curve": [(row["elapsed"], row["val_loss"]) for row in rows if "val_loss" in row and "elapsed" in row],
    }


def measure_remote(spec: str, val_text: str, unit: str) -> dict:
    """One row for `remote:URL#MODEL`: bits per character (or byte, as the runs count) of the first REMOTE_VAL_CHARS characters of the local
    runs' val split (per token its loss would not compare: the tokenizer is not theirs) and its decoding speed
    as a client sees it. A server that gives no prompt logprobs gets its speed alone, and a note saying why."""
    gen = RemoteGenerator(spec)
    row = {"name": spec, "path": spec, "family": "remote", "params": None, "val_loss": None, "val_bits_per_unit": None,
           "unit": "char", "train_tokens_per_s": None, "wall_s": None, "curve": []}
    try:
        scored = gen.bits_per_char(val_text[:REMOTE_VAL_CHARS])
    except GenlabError as e:
        row["note"] = str(e)
    else:
        row |= {"val_bits_per_char": scored["bits_per_char"], "scored_chars": scored["scored_chars"]}
        if unit in ("char", "byte"):  # the local runs' own unit: the same column
            row["val_bits_per_unit"], row["unit"] = scored[f"bits_per_{unit}"], unit
    row["sample_tokens_per_s"] = gen.decoding_rate()
    return row


def measure_images(run_path: Path, device: str = "cpu", n: int = IMAGE_SAMPLES) -> dict:
    """One row of the table for a finished image run."""
    run = RunDir(run_path).require()
    config = load_config(run.config)
    gen = load(run.path, device=device)
    rows = run.read_metrics()
    rates = [row["img_per_s"] for row in rows if "img_per_s" in row and row.get("step", 0) > 1]
    r = gen.evaluate(n=n, progress=False)
    return {
        "name": run.path.name, "path": str(run.path), "family": config.model.name,
        "params": gen.parameter_count,
        **{k: r[k] for k in ("fid", "kid", "precision", "recall", "sampling_images_per_s", "n_generated")},
        **({"bits_per_dim": r["bits_per_dim"]} if "bits_per_dim" in r else {}),
        "train_images_per_s": statistics.median(rates) if rates else None,
        "wall_s": max((row.get("elapsed", 0.0) for row in rows), default=0.0),
    }


def plot_fid(rows: list[dict], dest: Path) -> None:
    """FID of every image run as horizontal bars (lower is better)."""
    fig, ax = new_figure(7, 0.6 * len(rows) + 1.5)
    labels = [f"{row['name']} ({row['family']})" for row in rows]
    ax.barh(labels, [row["fid"] for row in rows], color="tab:blue")
    ax.invert_yaxis()
    ax.set_xlabel(f"FID, genlab features, {rows[0]['n_generated']} images each (lower is better)")
    ax.grid(alpha=0.3, axis="x")
    save_figure(fig, dest)


def format_table(rows: list[dict]) -> str:
    """Rows -> an aligned text table (a missing value shows as -)."""
    columns = IMAGE_COLUMNS if rows and "fid" in rows[0] else COLUMNS
    cells = [[heading for _, heading, _ in columns]]
    for row in rows:
        cells.append([fmt.format(row[key]) if row.get(key) is not None else "-" for key, _, fmt in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def plot_curves(rows: list[dict], dest: Path) -> None:
    """Validation loss against training wall-clock seconds, every run in one PNG."""
    fig, ax = new_figure(7, 4.5)
    for row in rows:
        label = f"{row['name']} ({row['family']})"
        if row["val_loss"] is None:  # a remote model: no training curve, and its loss per token would not compare
            continue
        if len(row["curve"]) > 1:
            xs, ys = zip(*row["curve"])
            ax.plot(xs, ys, marker="o", markersize=3, label=label)
        else:  # fitted, not trained (n-gram): a level line to beat
            ax.axhline(row["val_loss"], linestyle="--", color="gray", label=f"{label}, {row['wall_s']:.1f} s")
    ax.set_xlabel("training wall-clock time (s)")
    ax.set_ylabel("validation loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, dest)


def compare(
    items: list[str],
    out: Path | str = "runs/compare",
    models: list[str] | None = None,
    task: str = "text",
    data: str | None = None,
    max_time: float | None = None,
    sets: list[str] | None = None,
    device: str = "cpu",
    progress: bool = True,
    n: int = IMAGE_SAMPLES,
) -> list[dict]:
    """Train what needs training, measure every run, write out/compare.json and out/val_loss.png (sequence runs)
    or out/fid.png (image runs, `n` generated images each); return the rows."""
    out = Path(out)
    if not items and not models:
        raise GenlabError("compare: give run directories, TOML configs or --models")
    remotes = [item for item in items if str(item).startswith(REMOTE)]
    items = [item for item in items if not str(item).startswith(REMOTE)]
    for spec in remotes:
        parse_remote(spec)  # a malformed one is refused before anything trains
    if remotes and not (items or models):
        raise GenlabError("compare: a remote model is measured on the val split of the runs beside it; give a run too")
    for item in items:  # before the folder is made: a mistake leaves nothing behind
        if not (Path(item).is_dir() or (Path(item).suffix == ".toml" and Path(item).is_file())):
            raise GenlabError(f"{item}: neither a run directory nor a .toml run config")
    claim(out, "compare", inputs=[data])  # its sub-runs are resumed, its table and plot replaced
    items = list(items) + [str(p) for p in family_configs(models or [], out, task)]
    runs = train_configs(items, out, data, max_time, sets or [], progress)
    signatures = {str(r): _split_signature(RunDir(r)) for r in runs}
    first = next(iter(signatures.values()))
    for path, sig in signatures.items():
        if sig != first:
            raise GenlabError(f"{path}: its data or split differs from {runs[0]}'s; compare runs trained on the same data, seed and val_fraction")
    tasks = {load_config(RunDir(r).config).task for r in runs}
    if "image" in tasks and len(tasks) > 1:
        raise GenlabError("compare: image runs and sequence runs measure different things; compare them apart")
    if "image" in tasks:
        if remotes:
            raise GenlabError("compare: remote models are text models; compare them with text runs")
        rows = [measure_images(r, device, n) for r in runs]
        atomic_write_json(out / "compare.json", rows)
        plot_fid(rows, out / "fid.png")
        return rows
    rows = [measure(r, device) for r in runs]
    if remotes:
        first = RunDir(runs[0])  # its tokenizer reads the val split back as text (no model needed)
        val_text = load_tokenizer(first.tokenizer).decode(TokenStore(first.data).split("val")[:REMOTE_VAL_CHARS].tolist())
        rows += [measure_remote(spec, val_text, rows[0]["unit"]) for spec in remotes]
    atomic_write_json(out / "compare.json", rows)
    plot_curves(rows, out / "val_loss.png")
    return rows
