"""REINFORCE for syntax: a small code GPT, then the same run fine-tuned with the `code-parses` reward.

    python bench/rl_code.py [--train-steps 1500] [--rl-steps 150]

Trains a 4x128 GPT on `python-stdlib` (code tokenizer, 4,096 tokens) for --train-steps, measures the share of
100 functions sampled from `def ` (temperature 1, at most 128 tokens, ending where the function ends) that
`ast.parse` accepts, fine-tunes it with `genlab rl --reward code-parses --kl 0.05` for --rl-steps steps of 8
draws, and measures again, with the KL to the start model. One thread. Target: the rate at least doubles.
Writes bench/results/rl_code.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "rl_code.json"


def syntax_rate(run: Path, n: int = 100) -> float:
    import genlab
    from genlab.metrics.code import is_valid_python
    from genlab.tasks.code import function_body

    gen = genlab.load(run)
    samples = gen.generate("def ", n=n, seed=0, max_new_tokens=128, temperature=1.0, top_k=0, top_p=1.0)
    functions = ["def " + function_body(s.text) for s in samples]
    return sum(map(is_valid_python, functions)) / len(functions)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-steps", type=int, default=1500)
    p.add_argument("--rl-steps", type=int, default=150)
    p.add_argument("--out", default="/tmp/genlab-bench-rl-code")
    args = p.parse_args()
    import tempfile

    import torch

    import genlab
    from genlab.core.config import validate_config
    from genlab.rl.finetune import RLConfig, reinforce

    torch.set_num_threads(1)
    load_avg = list(os.getloadavg())
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    tree = {"task": "code", "out": f"{args.out}/start", "data": {"source": "python-stdlib"},
            "tokenizer": {"kind": "code", "vocab_size": 4096},
            "model": {"name": "gpt", "n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 256},
            "train": {"max_steps": args.train_steps, "batch_size": 16, "lr": 2e-3, "warmup_steps": 50, "eval_interval": 100_000,
                      "checkpoint_interval": 100_000, "progress": False, "threads": 1}}
    start = genlab.train(validate_config(tree), progress=False, overwrite=True).path
    before = syntax_rate(start)
    tuned = Path(tempfile.mkdtemp(prefix="genlab-bench-rl-")) / "tuned"
    t0 = time.perf_counter()
    summary = reinforce(start, tuned, RLConfig(reward="code-parses", steps=args.rl_steps, batch=8, max_new_tokens=128, kl=0.05,
                                               lr=1e-4, prompts=("def ",)), progress=False)
    rl_seconds = time.perf_counter() - t0
    after = syntax_rate(tuned)
    results = {"date": started, "load_avg_at_start": load_avg,
               "command": f"python bench/rl_code.py --train-steps {args.train_steps} --rl-steps {args.rl_steps}",
               "syntax_valid_before": before, "syntax_valid_after": after, "rl_steps": args.rl_steps,
               "rl_seconds": round(rl_seconds, 1), "reward_first": summary["first"]["reward"],
               "reward_last": summary["last"]["reward"], "kl_last": summary["last"]["kl"]}
    print(results, flush=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
