"""Where a training step's time goes: torch.profiler over the GPT, LSTM and GRU steps.

    python bench/train_profile.py [--threads 1] [--steps 20]

Each family at the tinyshakespeare recipe's shape (GPT 4x128 with RoPE, context 128; LSTM/GRU 2x256,
context 128; batch 32, 65 characters), the same step genlab's trainer runs (forward, cross-entropy, backward,
gradient clipping, the trainer's fused AdamW), profiled on CPU after 5 warm-up steps. The self CPU time of every operator is put in one
bucket — matrix products, attention, recurrent cells, optimizer, normalization and activations,
elementwise/other ops — and the rest of the step's wall time is Python and dispatch overhead. Writes
bench/results/train_profile.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "train_profile.json"
VOCAB, BATCH, CONTEXT = 65, 32, 128

# Operator name fragments -> bucket, first match wins (aten:: names as the profiler reports them).
BUCKETS = [
    ("attention", ("scaled_dot_product", "_flash_attention", "_efficient_attention", "softmax")),
    ("recurrent cells", ("lstm", "gru", "_thnn_fused", "rnn")),
    ("matrix products", ("addmm", "::mm", "bmm", "matmul", "linear", "baddbmm")),
    ("optimizer (AdamW)", ("_foreach", "adam", "lerp", "addcdiv", "addcmul")),
    ("gradient clipping", ("norm", "clamp")),
    ("normalization and activations", ("layer_norm", "gelu", "tanh", "sigmoid")),
    ("loss", ("cross_entropy", "log_softmax", "nll_loss")),
    ("embedding", ("embedding",)),
]


def bucket_of(name: str) -> str:
    lower = name.lower()
    return next((b for b, keys in BUCKETS if any(k in lower for k in keys)), "elementwise and other ops")


def build(family: str):
    from genlab.models.gpt import GPT, GPTConfig
    from genlab.models.rnn import RNN, RNNConfig

    torch.manual_seed(0)
    if family == "gpt":
        return GPT(GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=CONTEXT, rope=True), VOCAB)
    return RNN(RNNConfig(name=family, n_layer=2, n_embd=256, dropout=0.0), VOCAB)


def profile(family: str, steps: int) -> dict:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    from genlab.core.config import TrainConfig
    from genlab.training.schedule import make_optimizer

    model = build(family)
    opt = make_optimizer(model, TrainConfig(lr=1e-3), torch.device("cpu"))
    x, y = torch.randint(0, VOCAB, (BATCH, CONTEXT)), torch.randint(0, VOCAB, (BATCH, CONTEXT))

    def step():
        loss = F.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(5):
        step()
    start = time.perf_counter()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    wall = (time.perf_counter() - start) / steps
    buckets: dict[str, float] = {}
    top = []
    for event in prof.key_averages():
        ms = event.self_cpu_time_total / 1e3 / steps
        buckets[bucket_of(event.key)] = buckets.get(bucket_of(event.key), 0.0) + ms
        top.append((ms, event.key))
    ops = sum(buckets.values())
    # Profiling adds its own overhead per op; the un-profiled step time is the honest denominator.
    for _ in range(3):
        step()
    plain = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        plain.append(time.perf_counter() - t)
    plain_ms = sorted(plain)[len(plain) // 2] * 1e3
    return {"family": family, "params": sum(p.numel() for p in model.parameters()), "step_ms": plain_ms,
            "profiled_step_ms": wall * 1e3, "ops_ms": ops,
            "buckets_ms": dict(sorted(buckets.items(), key=lambda kv: -kv[1])),
            "python_and_dispatch_ms": max(0.0, wall * 1e3 - ops),
            "top_ops": [{"op": name, "ms": round(ms, 3)} for ms, name in sorted(top, reverse=True)[:8]]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=20)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    load_avg = list(os.getloadavg())
    rows = []
    for family in ("gpt", "lstm", "gru"):
        rows.append(profile(family, args.steps))
        print(json.dumps(rows[-1], indent=1), flush=True)
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_avg_at_start": load_avg,
               "command": f"python bench/train_profile.py --threads {args.threads} --steps {args.steps}",
               "threads": args.threads, "batch": BATCH, "context": CONTEXT, "rows": rows}
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
