"""genlab against nanoGPT on one GPU: same shape, same data, same GPU, one after the other in one run.

    python bench/gpu_vs_nanogpt.py [--peer ../shared/peers/nanoGPT] [--data tinyshakespeare.txt] [--iters 100]

Shape: GPT-2 small's (12 layers, 12 heads, width 768, context 1024) on Tiny Shakespeare's characters,
batch 12, no dropout, as nanoGPT's own defaults for that model.
  nanogpt  the peer's train.py (copied to a scratch folder, run as a subprocess) with --compile=True and
           --dtype=bfloat16: the median of its per-iteration times past its first 10
  genlab   `genlab train` through the Python API with the same shape, batch and data, --compile and
           train.dtype auto (bf16 autocast and TF32 on CUDA, fused AdamW, SDPA's flash kernel, pinned
           batches): the median tokens/s the trainer logs past its first 10 steps
Both are turned into MFU with the same FLOPs per token (6N + attention) against the bf16 matmul peak of this
GPU, timed (8192^3) before and after the two runs. `--shape tiny --device cpu` runs the same code path on a
CPU in a minute: a check of the script, not a figure. Writes bench/results/gpu_vs_nanogpt.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from vs_nanogpt import prepare_peer  # noqa: E402  (a sibling bench: the peer's files and its char dataset)

RESULTS = ROOT / "bench" / "results" / "gpu_vs_nanogpt.json"
SHAPES = {"gpt2-small": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024),
          "tiny": dict(n_layer=2, n_head=2, n_embd=64, block_size=64)}


def matmul_peak(device: torch.device, repeats: int = 20) -> float:
    """Best GFLOP/s of n x n matmuls in bf16 (a GPU's tensor cores: n = 8192) or fp32 (a CPU: n = 1024), over
    3 windows."""
    gpu = device.type == "cuda"
    n, dtype = (8192, torch.bfloat16) if gpu else (1024, torch.float32)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = 0.0
    for _ in range(4):  # the first window warms up
        sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        sync(device)
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9)
    return best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def nanogpt(work: Path, shape: dict, batch: int, iters: int, device: str) -> dict:
    """The peer's train.py at `shape` -> median ms per iteration past its warm-up, and the tokens/s that makes."""
    cmd = [sys.executable, "train.py", "config/train_shakespeare_char.py", f"--device={device}",
           f"--compile={device == 'cuda'}", f"--dtype={'bfloat16' if device == 'cuda' else 'float32'}",
           f"--batch_size={batch}", "--gradient_accumulation_steps=1", "--dropout=0.0", "--log_interval=1",
           f"--max_iters={iters}", f"--lr_decay_iters={iters}", f"--eval_interval={iters + 1}", "--eval_iters=1",
           "--always_save_checkpoint=False", "--out_dir=out-gpu-bench", *(f"--{k}={v}" for k, v in shape.items())]
    out = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=dict(os.environ))
    if out.returncode:
        raise RuntimeError(f"nanoGPT's train.py exited with {out.returncode}: {out.stdout[-500:]}{out.stderr[-500:]}")
    ms = [float(m.group(1)) for m in re.finditer(r"iter \d+: loss [\d.]+, time ([\d.]+)ms", out.stdout)]
    median = float(np.median(ms[10:] or ms))
    return {"median_iter_ms": median, "tokens_per_s": batch * shape["block_size"] / (median / 1000),
            "iterations_logged": len(ms)}


def genlab_run(data: Path, shape: dict, batch: int, iters: int, device: str, out: Path) -> dict:
    """genlab's trainer at `shape` -> median logged tokens/s past the first 10 steps, and its FLOPs per token."""
    from genlab.api import train
    from genlab.models.gpt import GPT, GPTConfig

    config = {"task": "text", "out": str(out), "data": {"source": str(data)}, "tokenizer": {"kind": "char"},
              "model": {"name": "gpt", "dropout": 0.0, **shape},
              "train": {"max_steps": iters, "batch_size": batch, "device": device, "compile": True,
                        "log_interval": 1, "eval_interval": iters + 1, "checkpoint_interval": iters + 1,
                        "eval_batches": 1, "sample_tokens": 0, "progress": False}}
    run = train(config, progress=False, overwrite=True)
    rows = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    rates = [r["tok_per_s"] for r in rows if "tok_per_s" in r and r["step"] > 10]
    first = next(r for r in rows if "dtype" in r)
    model = GPT(GPTConfig(**shape), 65)
    return {"tokens_per_s": float(np.median(rates)), "steps_logged": len(rates), "dtype": first["dtype"],
            "flops_per_token": model.flops_per_token(shape["block_size"]), "params": model.num_params()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peer", default=str(ROOT.parent / "shared" / "peers" / "nanoGPT"))
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"))
    p.add_argument("--shape", choices=sorted(SHAPES), default="gpt2-small")
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--device", default="cuda")
    p.add_argument("--work", default="/tmp/genlab-bench-gpu")
    args = p.parse_args()
    device = torch.device(args.device)
    shape, work = SHAPES[args.shape], Path(args.work)
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device": args.device,
               "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "torch": torch.__version__, "shape": args.shape, **shape, "batch": args.batch, "iters": args.iters,
               "load_avg_at_start": os.getloadavg(), "peak_gflops": matmul_peak(device)}
    print(f"{results['device_name']}: matmul peak {results['peak_gflops']:,.0f} GFLOP/s", flush=True)
    results["genlab"] = genlab_run(Path(args.data), shape, args.batch, args.iters, args.device, work / "genlab")
    peer = prepare_peer(Path(args.peer), Path(args.data), work / "nanogpt")
    results["nanogpt"] = nanogpt(peer, shape, args.batch, args.iters, args.device)
    results["peak_gflops_after"] = matmul_peak(device)
    peak = max(results["peak_gflops"], results["peak_gflops_after"])
    for name in ("genlab", "nanogpt"):
        r = results[name]
        r["mfu"] = r["tokens_per_s"] * results["genlab"]["flops_per_token"] / 1e9 / peak
        print(f"{name}: {r['tokens_per_s']:,.0f} tok/s, MFU {r['mfu']:.1%}", flush=True)
    results["genlab_over_nanogpt"] = results["genlab"]["tokens_per_s"] / results["nanogpt"]["tokens_per_s"]
    print(f"genlab / nanoGPT tokens/s: {results['genlab_over_nanogpt']:.2f}x")
    if args.shape == "gpt2-small":  # the tiny shape checks the script; it is not a figure to keep
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
