"""Sampling speed of every sequence family, and genlab's GPT against Hugging Face's.

    python bench/text_sample.py [--threads 2] [--tokens 200]

For each family at the width of a small char model (vocab 65; GPT/FNet 4x128,
context 256; LSTM/GRU 2x256; a 6-gram fitted on random text): tokens/s at
batch 1 and 8 with the cache/state (temperature 1, no top-k/top-p), and for
`gpt` and `fnet` also recomputing the whole context each step, same weights.
For `gpt`, transformers' GPT2LMHeadModel with the same architecture and the
same weights copied in (checked: equal logits) runs `generate` in the same
process, at batch 1, 8 and 32, sampled (temperature 1) and greedy, at each of
`--hf-threads` (default 1 and 2): genlab and transformers take turns, round by
round, and each keeps its best round, so both see the same moments of a shared
CPU. Weights are random: speed does not depend on them.
Writes bench/results/text_sample.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from genlab.workflows.benchmark import genlab_decoder, side_by_side, transformers_decoder, transformers_twin
from genlab.models.fnet import FNet, FNetConfig
from genlab.models.gpt import GPT, GPTConfig
from genlab.models.ngram import NGram, NGramConfig
from genlab.models.rnn import RNN, RNNConfig

RESULTS = Path(__file__).resolve().parent / "results" / "text_sample.json"
V, BLOCK = 65, 256


def families() -> dict:
    torch.manual_seed(0)
    ngram = NGram(NGramConfig(order=6), V)
    ngram.fit(np.random.default_rng(0).integers(0, V, 200_000))
    return {
        "gpt": GPT(GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=BLOCK), V),
        "fnet": FNet(FNetConfig(n_layer=4, n_embd=128, block_size=BLOCK), V),
        "lstm": RNN(RNNConfig(name="lstm", n_layer=2, n_embd=256), V),
        "gru": RNN(RNNConfig(name="gru", n_layer=2, n_embd=256), V),
        "ngram": ngram,
    }


def genlab_rate(model, batch: int, n: int, use_cache: bool = True) -> float:
    """Best tokens/s over 3 repeats after one warm-up."""
    return side_by_side([genlab_decoder(model, batch, n, use_cache=use_cache)], batch * n)[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tokens", type=int, default=200)
    p.add_argument("--hf-threads", default="1,2", help="thread counts of the comparison with transformers")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    n = args.tokens
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "threads": args.threads,
               "load_avg_at_start": os.getloadavg(), "new_tokens": n, "families": {}}
    models = families()
    for name, model in models.items():
        model.eval()
        row = {"params": model.num_params()}
        for batch in (1, 8):
            row[f"batch{batch}_tokens_per_s"] = genlab_rate(model, batch, n)
        if name in ("gpt", "fnet"):
            row["batch1_recompute_tokens_per_s"] = genlab_rate(model, 1, n, use_cache=False)
            row["cache_speedup_batch1"] = row["batch1_tokens_per_s"] / row["batch1_recompute_tokens_per_s"]
        results["families"][name] = row
        print(name, {k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    gpt = models["gpt"]
    hf = transformers_twin(gpt)
    x = torch.randint(0, V, (2, 50))
    with torch.no_grad():
        diff = (hf(x).logits - gpt(x)).abs().max().item()
    hf_row = {"max_logit_difference": diff, "rows": []}
    for threads in map(int, args.hf_threads.split(",")):
        torch.set_num_threads(threads)
        for batch in (1, 8, 32):
            for greedy in (False, True):
                ours, theirs = side_by_side([genlab_decoder(gpt, batch, n, greedy), transformers_decoder(hf, batch, n, greedy)],
                                            batch * n, rounds=4)
                row = {"threads": threads, "batch": batch, "decoding": "greedy" if greedy else "sampled",
                       "genlab_tokens_per_s": ours, "transformers_tokens_per_s": theirs, "ratio": ours / theirs}
                hf_row["rows"].append(row)
                print("vs transformers", {k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    results["hf_gpt2"] = hf_row
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
