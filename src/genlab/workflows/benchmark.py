"""`genlab bench`: what this machine does — fp32 matmul peak, GPT training tokens/s and MFU, and decoding
tokens/s against transformers' `generate` with the same weights. The numbers come from this machine, now:
run it on an idle machine (it prints the load average it started at).
"""

from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as F
from genlab.core.config import TrainConfig
from genlab.core.generators import SamplingParams, UNFILTERED
from genlab.export.hf import gpt2_twin
from genlab.models.gpt import GPT, GPTConfig
from genlab.sampling.engine import Engine, Request, decode
from genlab.training.compiling import Compiled
from genlab.training.schedule import make_optimizer

VOCAB = 65  # Tiny Shakespeare's characters: the shapes nanoGPT's CPU config uses


def matmuls(n: int = 1024, repeats: int = 16):
    """A callable doing `repeats` n x n fp32 matmuls, and the FLOPs one call does: the peak's side of MFU."""
    a, b = torch.randn(n, n), torch.randn(n, n)

    def run():
        for _ in range(repeats):
            a @ b

    return run, 2 * n**3 * repeats


def train_steps(cfg, batch: int, steps: int, dtype: str = "float32", compiled: bool = False):
    """A callable doing `steps` full GPT training steps as genlab's trainer takes them (forward, backward, clip,
    fused AdamW; the forward through torch.compile with `compiled`) on random tokens, the FLOPs one call does,
    and the model."""
    torch.manual_seed(0)
    model = GPT(cfg, VOCAB)
    opt = make_optimizer(model, TrainConfig(lr=1e-3), torch.device("cpu"))
    forward = Compiled(model, "bench") if compiled else model
    x, y = torch.randint(0, VOCAB, (batch, cfg.block_size)), torch.randint(0, VOCAB, (batch, cfg.block_size))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16")

    def run():
        for _ in range(steps):
            with autocast:
                loss = F.cross_entropy(forward(x).reshape(-1, VOCAB).float(), y.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

    return run, steps * batch * cfg.block_size * model.flops_per_token(cfg.block_size), model


def training_mfu(shapes: dict, variants=((False, "float32"),), rounds: int = 5, steps: int = 5) -> dict:
    """Training tokens/s, GFLOP/s and MFU of GPT `shapes` ({name: (GPTConfig, batch)}) for each (compile, dtype)
    variant, taking turns with the fp32 1024^3 matmul that defines the peak: each MFU is a step rate over a
    peak measured at the same moments, so a machine whose speed drifts (a shared CPU) moves both alike."""
    peak_run, peak_flops = matmuls()
    runs, flops, names = [peak_run], [peak_flops], []
    for shape, (cfg, batch) in shapes.items():
        for compiled, dtype in variants:
            run, work, model = train_steps(cfg, batch, steps, dtype, compiled)
            runs.append(run)
            flops.append(work)
            names.append((f"{shape} {'compiled' if compiled else 'eager'} {dtype}", model, cfg, batch))
    rates = side_by_side(runs, flops, rounds)  # FLOP/s
    peak = rates[0]
    rows = {}
    for (name, model, cfg, batch), rate in zip(names, rates[1:]):
        tokens = rate / model.flops_per_token(cfg.block_size)
        rows[name] = {"tokens_per_s": tokens, "gflops": rate / 1e9, "mfu": rate / peak, "params": model.num_params(),
                      "flops_per_token": model.flops_per_token(cfg.block_size), "batch": batch, "context": cfg.block_size}
    return {"peak_gflops": peak / 1e9, "rows": rows}


def genlab_decoder(model, batch: int, new_tokens: int, greedy: bool = False, use_cache: bool = True):
    """A run of genlab's step engine: `batch` rows of one prompt, `new_tokens` each (sampled at temperature 1, or greedy)."""
    d = SamplingParams(max_new_tokens=new_tokens, **({"temperature": 0.0} if greedy else UNFILTERED))
    return lambda: decode(Engine(model, use_cache=use_cache), [Request([0], d, seed=i) for i in range(batch)])


def transformers_twin(model):
    """transformers' GPT-2 holding `model`'s weights (what `genlab export --format hf` writes); None without transformers."""
    try:
        hf = gpt2_twin(model)
    except ImportError:  # transformers is not installed
        return None
    hf.generation_config.pad_token_id = 0
    return hf


def transformers_decoder(hf, batch: int, new_tokens: int, greedy: bool = False):
    """A run of transformers' `generate` (KV cache) doing what `genlab_decoder` does."""
    prompt = torch.zeros(batch, 1, dtype=torch.long)
    return lambda: hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=not greedy, top_k=0,
                               max_new_tokens=new_tokens, min_new_tokens=new_tokens, use_cache=True)


def side_by_side(runs, items, rounds: int = 3) -> list[float]:
    """Items/s of each run (`items`: what one call of every run does, or a list, one per run), taking turns
    round by round after one warm-up each, each keeping its best round: on a shared CPU every run sees the
    same moments."""
    items = items if isinstance(items, list) else [items] * len(runs)
    for run in runs:
        run()
    best = [float("inf")] * len(runs)
    for _ in range(rounds):
        for i, run in enumerate(runs):
            start = time.perf_counter()
            run()
            best[i] = min(best[i], time.perf_counter() - start)
    return [n / b for n, b in zip(items, best)]


def decode_comparison(model, batches: tuple[int, ...], new_tokens: int, rounds: int = 3) -> dict:
    """Sampling tokens/s of genlab and of transformers (None without it) at each batch size, side by side."""
    hf = transformers_twin(model)
    ours, theirs = {}, {} if hf is not None else None
    for b in batches:
        runs = [genlab_decoder(model, b, new_tokens)] + ([transformers_decoder(hf, b, new_tokens)] if hf is not None else [])
        rates = side_by_side(runs, b * new_tokens, rounds)
        ours[b] = rates[0]
        if hf is not None:
            theirs[b] = rates[1]
    return {"genlab_tokens_per_s": ours, "transformers_tokens_per_s": theirs}


def run(quick: bool = True) -> dict:
    """Measure and return the figures `genlab bench` prints."""
    load = os.getloadavg()[0]
    nano = GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=64)  # nanoGPT's CPU example: 4x128, context 64
    train = training_mfu({"gpt 4x128, context 64, batch 12 (nanoGPT's CPU config)": (nano, 12)},
                         variants=((False, "float32"), (True, "float32")), rounds=5 if quick else 10)
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=256), VOCAB).eval()
    batches, new = ((1, 8) if quick else (1, 8, 32)), (64 if quick else 200)
    decoding = decode_comparison(model, batches, new, rounds=2 if quick else 3)
    return {"threads": torch.get_num_threads(), "load_avg_at_start": load, "matmul_peak_gflops": train["peak_gflops"],
            "train": train["rows"], "decode": {"shape": "gpt 4x128, context 256", "new_tokens": new, **decoding}}
