"""Training and sampling speed of each sequence family at the music benchmark's sizes, measured side by side.

The wall-clock benchmark (music_families.py) runs one family after another, so
on a shared machine each family meets a different load. Here the families take
turns, round after round, on the same batches: the median over rounds gives
speed ratios that the load affects alike. Sizes and batch are those of
music_families.py (vocabulary 389, REMI on `bach`; token values do not change speed).
Training uses 2 threads; sampling is measured with 1 and with 2 threads, one
piece and 32 pieces at once.

    python bench/music_throughput.py              # 3 rounds
    python bench/music_throughput.py --rounds 1   # a quick look

Writes bench/results/music_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from music_families import MODELS  # noqa: E402  (the same model sizes)

from genlab.core.config import validate_config  # noqa: E402
from genlab.core.files import atomic_write_json  # noqa: E402
from genlab.core.generators import UNFILTERED, SamplingParams  # noqa: E402
from genlab.sampling.engine import Engine, Request, decode  # noqa: E402
from genlab.tasks.sequence import build_model  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "music_throughput.json"
VOCAB, BATCH, BLOCK = 389, 16, 256
TRAIN_STEPS, SAMPLE_TOKENS, SAMPLE_ROWS = 3, 128, 32


def train_rate(model, optimizer, x, y) -> float:
    """Training tokens per second over TRAIN_STEPS steps (forward, backward, AdamW)."""
    model.train()
    t0 = time.perf_counter()
    for _ in range(TRAIN_STEPS):
        loss = F.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return TRAIN_STEPS * x.numel() / (time.perf_counter() - t0)


def sample_rate(model, rows: int) -> float:
    """Sampled tokens per second: `rows` sequences of SAMPLE_TOKENS tokens decoded together."""
    t0 = time.perf_counter()
    decode(Engine(model), [Request([0], SamplingParams(max_new_tokens=SAMPLE_TOKENS, **UNFILTERED), seed=i) for i in range(rows)])
    return rows * SAMPLE_TOKENS / (time.perf_counter() - t0)


def main() -> None:
    load_at_start = list(os.getloadavg())  # stated beside the figures: a busy machine understates them
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default="lstm,gru,fnet,gpt")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    families = args.families.split(",")
    models = {f: build_model(validate_config({"task": "music", "model": MODELS[f]}), VOCAB) for f in families}
    optimizers = {f: torch.optim.AdamW(m.parameters(), lr=1e-3) for f, m in models.items()}
    tokens = torch.randint(0, VOCAB, (BATCH, BLOCK + 1))
    x, y = tokens[:, :-1], tokens[:, 1:]
    threads = min(2, os.cpu_count() or 1)
    rates = {f: {} for f in families}
    for r in range(args.rounds):
        for f in families:
            torch.set_num_threads(threads)
            rates[f].setdefault("train", []).append(train_rate(models[f], optimizers[f], x, y))
            # SamplingParams runs many tiny ops: on a loaded machine a second thread mostly waits, so both are measured.
            for n_threads in sorted({1, threads}):
                torch.set_num_threads(n_threads)
                for rows in (1, SAMPLE_ROWS):
                    rates[f].setdefault(f"sample_{rows}_threads_{n_threads}", []).append(sample_rate(models[f], rows))
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    results = {f: {k: float(np.median(v)) for k, v in rs.items()} for f, rs in rates.items()}
    print(json.dumps(results, indent=1))
    atomic_write_json(RESULTS, {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}",
        "batch": BATCH, "block": BLOCK, "vocab": VOCAB, "rounds": args.rounds, "train_threads": threads,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_avg_at_start": load_at_start,
        "tokens_per_s": results,
    })
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
