"""`genlab bench`: what this machine does — fp32 matmul peak, GPT training tokens/s and MFU, and decoding
tokens/s against transformers' `generate` with the same weights. The numbers come from this machine, now:
run it on an idle machine (it prints the load average it started at).
"""

from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as F

VOCAB = 65  # Tiny Shakespeare's characters: the shapes nanoGPT's CPU config uses


def matmul_peak(seconds: float = 1.0, n: int = 1024) -> float:
    """Best GFLOP/s of an n x n fp32 matmul over a few windows."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(5):
        a @ b
    best = 0.0
    for _ in range(5):
        start, k = time.perf_counter(), 0
        while time.perf_counter() - start < seconds / 5:
            a @ b
            k += 1
        best = max(best, 2 * n**3 * k / (time.perf_counter() - start) / 1e9)
    return best


def train_step_rate(cfg, batch: int, steps: int, dtype: str = "float32") -> dict:
    """Tokens/s and achieved GFLOP/s of the full GPT training step (forward, backward, clip, AdamW) on random tokens."""
    from genlab.models.gpt import GPT

    torch.manual_seed(0)
    model = GPT(cfg, VOCAB)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    x, y = torch.randint(0, VOCAB, (batch, cfg.block_size)), torch.randint(0, VOCAB, (batch, cfg.block_size))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16")
    times = []
    for i in range(steps + 3):
        start = time.perf_counter()
        with autocast:
            loss = F.cross_entropy(model(x).reshape(-1, VOCAB).float(), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= 3:
            times.append(time.perf_counter() - start)
    step = sorted(times)[len(times) // 2]  # median: robust to other jobs on a shared CPU
    rate = batch * cfg.block_size / step
    return {"tokens_per_s": rate, "gflops": rate * model.flops_per_token(cfg.block_size) / 1e9,
            "params": model.num_params(), "flops_per_token": model.flops_per_token(cfg.block_size)}


def genlab_decoder(model, batch: int, new_tokens: int, greedy: bool = False, use_cache: bool = True):
    """A run of genlab's step engine: `batch` rows of one prompt, `new_tokens` each (sampled at temperature 1, or greedy)."""
    from genlab.sampling.engine import Decoding, Engine, Request, decode

    d = Decoding(max_new_tokens=new_tokens, temperature=0.0 if greedy else 1.0)
    return lambda: decode(Engine(model, use_cache=use_cache), [Request([0], d, seed=i) for i in range(batch)])


def transformers_twin(model):
    """transformers' GPT-2 holding `model`'s weights (what `genlab export --format hf` writes); None without transformers."""
    try:
        from genlab.export.hf import gpt2_twin

        hf = gpt2_twin(model)
    except ImportError:
        return None
    hf.generation_config.pad_token_id = 0
    return hf


def transformers_decoder(hf, batch: int, new_tokens: int, greedy: bool = False):
    """A run of transformers' `generate` (KV cache) doing what `genlab_decoder` does."""
    prompt = torch.zeros(batch, 1, dtype=torch.long)
    return lambda: hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=not greedy, top_k=0,
                               max_new_tokens=new_tokens, min_new_tokens=new_tokens, use_cache=True)


def side_by_side(runs, items: int, rounds: int = 3) -> list[float]:
    """Items/s of each run, taking turns round by round after one warm-up each, each keeping its best round:
    on a shared CPU every run sees the same moments."""
    for run in runs:
        run()
    best = [float("inf")] * len(runs)
    for _ in range(rounds):
        for i, run in enumerate(runs):
            start = time.perf_counter()
            run()
            best[i] = min(best[i], time.perf_counter() - start)
    return [items / b for b in best]


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
    from genlab.models.gpt import GPT, GPTConfig

    load = os.getloadavg()[0]
    peak = matmul_peak(1.0 if quick else 3.0)
    nano = GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=64)  # nanoGPT's CPU example: 4x128, context 64
    train = train_step_rate(nano, batch=12, steps=10 if quick else 50)
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=256), VOCAB).eval()
    batches, new = ((1, 8) if quick else (1, 8, 32)), (64 if quick else 200)
    decoding = decode_comparison(model, batches, new, rounds=2 if quick else 3)
    return {"threads": torch.get_num_threads(), "load_avg_at_start": load, "matmul_peak_gflops": peak,
            "train": {"shape": "gpt 4x128, context 64, batch 12 (nanoGPT's CPU config)", **train,
                      "mfu": train["gflops"] / peak},
            "decode": {"shape": "gpt 4x128, context 256", "new_tokens": new, **decoding}}
