"""Every sequence family on the `bach` chorales at the same wall-clock budget.

For each family: train for --seconds of wall clock (same batch, context and
learning-rate schedule), then measure the val loss over the whole val split,
the music metrics of 32 pieces of 512 tokens generated from scratch, and the
same metrics for 32 held-out real pieces of 512 tokens (the reference row).
Also: training tokens/s, sampling tokens/s (32 pieces decoded as one batch)
and seconds of music generated per second of sampling compute.

    python bench/music_families.py                       # lstm, gru, fnet, gpt; 90 s each
    python bench/music_families.py --families gpt --seconds 30   # a quick look

Writes bench/results/music_families.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from genlab.api import load, train
from genlab.core.config import validate_config
from genlab.datasets.token_store import TokenStore
from genlab.metrics.music import Piece, music_metrics, pitch_class_histogram
from genlab.core.runs import RunDir
from genlab.core.files import atomic_write_json
from genlab.tasks.music import seconds_of
from genlab.tasks.sequence import evaluate_tokens

RESULTS = Path(__file__).parent / "results" / "music_families.json"
MODELS = {  # about 0.8-1.1 M parameters each
    "lstm": {"name": "lstm", "n_layer": 2, "n_embd": 256, "block_size": 256, "dropout": 0.1},
    "gru": {"name": "gru", "n_layer": 2, "n_embd": 256, "block_size": 256, "dropout": 0.1},
    "fnet": {"name": "fnet", "n_layer": 4, "n_embd": 128, "block_size": 256},
    "gpt": {"name": "gpt", "n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 256},
}
SAMPLES, SAMPLE_TOKENS = 32, 512


def run_family(family: str, seconds: float, out: Path) -> dict:
    tree = {
        "task": "music", "out": str(out / family), "data": {"source": "bach"}, "tokenizer": {"kind": "midi"},
        "model": MODELS[family],
        "train": {"max_steps": 100_000, "max_time": seconds, "batch_size": 16, "lr": 2e-3, "warmup_steps": 50,
                  "eval_interval": 100_000, "checkpoint_interval": 100_000, "eval_batches": 10, "progress": False},
        "sample": {"temperature": 1.0, "top_k": 0, "top_p": 1.0},
    }
    run = train(validate_config(tree), progress=False, overwrite=True)
    rows = RunDir(run.path).read_metrics()
    train_rate = [r["tok_per_s"] for r in rows if "tok_per_s" in r]
    gen = load(run.path, device="cpu")
    store = TokenStore(gen.run.data)
    val = store.split("val")
    loss = evaluate_tokens(gen.model, val, gen.tokenizer.unit_lengths(), MODELS[family]["block_size"], gen.device)
    real = gen.heldout_pieces(val, SAMPLES, SAMPLE_TOKENS, store.header["chunk"])
    t0 = time.perf_counter()
    scores = [s.score for s in gen.generate(max_new_tokens=SAMPLE_TOKENS, n=SAMPLES, seed=0)]
    sample_s = time.perf_counter() - t0
    reference = pitch_class_histogram(real)
    return {
        "family": family,
        "params": sum(p.numel() for p in gen.model.parameters()),
        "steps": run.results["step"],
        "train_seconds": run.results["elapsed"],
        "train_tokens_per_s": float(np.median(train_rate)) if train_rate else None,
        "val_loss": loss["loss"],
        "sample_tokens_per_s": SAMPLES * SAMPLE_TOKENS / sample_s,
        "music_seconds_per_compute_second": sum(seconds_of(s) for s in scores) / sample_s,
        "generated": music_metrics([Piece.from_score(s) for s in scores], reference),
        "heldout": music_metrics(real, reference),
    }


def main() -> None:
    load_at_start = list(os.getloadavg())  # stated beside the figures: a busy machine understates them
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default="lstm,gru,fnet,gpt")
    parser.add_argument("--seconds", type=float, default=90.0, help="training wall-clock budget per family")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    # Families may be run in separate invocations (each under ~10 minutes): results merge by family.
    saved = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results = {} if saved.get("seconds_per_family") != args.seconds else saved.get("results", {})
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families.split(","):
            r = run_family(family, args.seconds, Path(tmp))
            r["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            r["load_avg_at_start"] = load_at_start
            print(json.dumps({k: v for k, v in r.items() if k not in ("generated", "heldout")}), flush=True)
            results[family] = r
            atomic_write_json(RESULTS, {
                "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}",
                "seconds_per_family": args.seconds, "samples": SAMPLES, "sample_tokens": SAMPLE_TOKENS,
                "results": results,
            })
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
