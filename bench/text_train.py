"""Text training on CPU: matmul peak, GPT training MFU, nanoGPT's CPU config and genlab's best recipe.

    python bench/text_train.py --data ../shared/data/tinyshakespeare.txt [--threads 2] [--parts mfu,nanogpt,best]

mfu      tokens/s and model FLOPs utilization (6N + attention, per token) of the `gpt`
         training step as the trainer takes it (forward, backward, clip, fused AdamW) at
         nanoGPT's shape and the best recipe's: eager and compiled (--compile) in fp32, eager
         in bf16 autocast; each takes turns with the fp32 1024^3 matmul that sets the peak
nanogpt  genlab `gpt` with nanoGPT's CPU config (4x128, 4 heads, block 64, batch 12,
         no dropout, lr 1e-3, 2000 iterations): val loss over the whole val split, wall time
best     each recipe named by --recipes (default recipes/tinyshakespeare-gpt.toml) for its
         time budget: the val-loss curve, the final val loss over the whole val split, wall time
plot     every run's val loss against training seconds (from the JSON)
Writes bench/results/text_train.json and bench/results/text_train.png.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from genlab.workflows.benchmark import training_mfu
from genlab.core.config import build_config
from genlab.models.gpt import GPTConfig


ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "text_train.json"


def train_run(config_file: Path | None, data: str, out: Path, overrides: list[str], max_time: float | None = None) -> dict:
    """Train with genlab, then measure val loss over the whole val split."""
    from genlab.api import load, train
    from genlab.datasets.token_store import TokenStore
    from genlab.tasks.sequence import evaluate_tokens

    flags = {"data": data, "out": str(out), "max_time": max_time}
    config = build_config(config_file, flags, overrides, base={"task": "text"})
    config.train.progress = False
    start = time.perf_counter()
    run = train(config, progress=False, overwrite=True)
    wall = time.perf_counter() - start
    gen = load(run.path, device="cpu")
    full = evaluate_tokens(gen.model, TokenStore(run.path / "data").split("val"), gen.tokenizer.unit_lengths(),
                           config.model.block_size, gen.device)
    rows = run.path.joinpath("metrics.jsonl").read_text().splitlines()
    curve = [(r["elapsed"], r["val_loss"]) for r in map(json.loads, rows) if "val_loss" in r]
    rates = [r["tok_per_s"] for r in map(json.loads, rows) if "tok_per_s" in r]
    return {"steps": run.results["step"], "train_seconds": run.results["elapsed"], "wall_seconds": wall,
            "val_loss": full["loss"], "val_bits_per_char": full["bits_per_unit"], "params": gen.model.num_params(),
            "median_tokens_per_s": sorted(rates)[len(rates) // 2] if rates else None, "curve": curve,
            "sample": gen.generate("ROMEO:", max_new_tokens=200, temperature=0.8, seed=0)[0].text}


NANOGPT = ["model.name=gpt", "model.n_layer=4", "model.n_head=4", "model.n_embd=128", "model.block_size=64",
           "model.dropout=0.0", "train.batch_size=12", "train.lr=1e-3", "train.max_steps=2000", "train.warmup_steps=100",
           "train.min_lr_ratio=0.1", "train.eval_interval=250", "train.eval_batches=10", "train.checkpoint_interval=100000",
           "tokenizer.kind=char"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--parts", default="mfu,nanogpt,best,plot")
    p.add_argument("--recipes", default="tinyshakespeare-gpt", help="recipes (names in recipes/) the `best` part trains")
    p.add_argument("--best-time", type=float, default=None, help="override the recipes' time budget (s)")
    p.add_argument("--out", default="/tmp/genlab-bench-text-train")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    parts = set(args.parts.split(","))
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    machine = {"threads": args.threads, "cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg(), "torch": torch.__version__}
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if parts & {"nanogpt", "best"}:  # the training runs' provenance; an MFU run keeps its own below
        results["machine"], results["date"] = machine, date

    def save():
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")

    best_cfg = build_config(ROOT / "recipes" / "tinyshakespeare-gpt.toml")
    if "mfu" in parts:  # one record per thread count: the issue asks for 1 and 2 threads
        shapes = {"nanogpt 4x128 T64 B12": (GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=64), 12),
                  "best recipe": (best_cfg.model, best_cfg.train.batch_size)}
        variants = ((False, "float32"), (True, "float32"), (False, "bfloat16"))
        r = training_mfu(shapes, variants, rounds=8)
        results[f"mfu_turns_threads{args.threads}"] = {"machine": machine, "date": date, **r}
        print(f"fp32 matmul peak: {r['peak_gflops']:.0f} GFLOP/s on {args.threads} threads", flush=True)
        for name, row in r["rows"].items():
            print(f"{name}: {row['tokens_per_s']:,.0f} tok/s, {row['gflops']:.0f} GFLOP/s, MFU {row['mfu']:.0%}", flush=True)
        save()
    if "nanogpt" in parts:
        r = train_run(None, args.data, Path(args.out) / "nanogpt", NANOGPT)
        results["nanogpt_config"] = r
        print(f"nanoGPT config: val loss {r['val_loss']:.4f} after {r['steps']} steps, {r['train_seconds']:.0f} s training", flush=True)
        save()
    if "best" in parts:
        for name in args.recipes.split(","):
            r = train_run(ROOT / "recipes" / f"{name}.toml", args.data, Path(args.out) / name, [], args.best_time)
            results.setdefault("recipes", {})[name] = r
            print(f"{name}: val loss {r['val_loss']:.4f} after {r['steps']} steps, {r['train_seconds']:.0f} s training", flush=True)
            save()
    save()
    if "plot" in parts:
        from genlab.workflows.compare import plot_curves

        runs = [("nanogpt-config", "gpt", results["nanogpt_config"])] if "nanogpt_config" in results else []
        runs += [(name, name.rsplit("-", 1)[-1], r) for name, r in results.get("recipes", {}).items()]  # <dataset>-<family>
        plot_curves([{"name": name, "family": family, **r} for name, family, r in runs], RESULTS.with_suffix(".png"))


if __name__ == "__main__":
    main()
