"""The sweep behind the budget recipes: model size, dropout and weight decay at 1, 3 and 10 minutes.

    python bench/budget_sweep.py --data ../shared/data/tinyshakespeare.txt [--parallel 2] [--only NAME,...]

Every candidate trains on Tiny Shakespeare's first 90 % (`data.split = "tail"`, nanoGPT's cut) for its
wall-clock budget on ONE thread, `--parallel` candidates at a time (a 1-thread run beside another on a
2-core box sees about 0.6 of the tokens of a 2-thread run alone, so a sweep budget stands for about 0.6
of the same recipe budget: docs/models.md). Each is scored on the whole val split (the last 10 %)
with the weights it kept (best val loss). Writes bench/results/budget_sweep.json; the recipes in
recipes/budgets/tinyshakespeare-{lstm,gpt}-{1,3,10,20}min.toml follow its winners (docs/models.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from text_train import train_run  # noqa: E402  (a sibling bench: train a config, score the whole val split)

RESULTS = ROOT / "bench" / "results" / "budget_sweep.json"

LSTM = ["model.name=lstm", "model.n_layer=2", "model.block_size=128", "train.lr=3e-3"]
GPT = ["model.name=gpt", "model.n_layer=4", "model.n_head=4", "model.block_size=128", "model.rope=true", "train.lr=2e-3"]
COMMON = ["tokenizer.kind=char", "data.split=tail", "train.max_steps=1000000", "train.batch_size=32",
          "train.warmup_steps=100", "train.min_lr_ratio=0.1", "train.eval_batches=10", "train.checkpoint_interval=1000000",
          "train.sample_tokens=0"]


def candidates() -> dict[str, tuple[float, list[str]]]:
    """name -> (budget seconds, overrides)."""
    c = {}
    for width in (192, 256):
        c[f"60s lstm 2x{width} d0"] = (60, LSTM + [f"model.n_embd={width}", "model.dropout=0.0", "train.eval_interval=50"])
    for width, drop in ((256, 0.0), (256, 0.1), (384, 0.0), (384, 0.1)):
        c[f"180s lstm 2x{width} d{drop}"] = (180, LSTM + [f"model.n_embd={width}", f"model.dropout={drop}", "train.eval_interval=100"])
    for width, drop, wd in ((256, 0.1, 0.1), (256, 0.2, 0.1), (384, 0.2, 0.1), (256, 0.2, 0.0), (256, 0.0, 0.1)):
        c[f"600s lstm 2x{width} d{drop} wd{wd}"] = (600, LSTM + [f"model.n_embd={width}", f"model.dropout={drop}",
                                                          f"train.weight_decay={wd}", "train.eval_interval=200"])
    for width, drop in ((128, 0.0),):
        c[f"600s gpt 4x{width} d{drop}"] = (600, GPT + [f"model.n_embd={width}", f"model.dropout={drop}", "train.eval_interval=200"])
    return c


def run_one(name: str, data: str, out: Path) -> dict:
    budget, overrides = candidates()[name]
    return train_run(None, data, out, COMMON + overrides, max_time=budget)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"))
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--only", default=None, help="comma-separated candidate names (default: all not yet in the results)")
    p.add_argument("--out", default="/tmp/genlab-bench-sweep")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a child process: train this candidate, print JSON
    args = p.parse_args()
    if args.one:
        import torch

        torch.set_num_threads(1)
        r = run_one(args.one, args.data, Path(args.out) / args.one.replace(" ", "_"))
        print("RESULT " + json.dumps(r), flush=True)
        return
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"runs": {}}
    names = args.only.split(",") if args.only else [n for n in candidates() if n not in results["runs"]]
    results.update(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), load_avg_at_start=os.getloadavg(),
                   threads_per_run=1, parallel=args.parallel, cpus=os.cpu_count())
    pending = list(names)
    while pending:
        batch, pending = pending[: args.parallel], pending[args.parallel:]
        procs = [(n, subprocess.Popen([sys.executable, __file__, "--one", n, "--data", args.data, "--out", args.out],
                                      stdout=subprocess.PIPE, text=True)) for n in batch]
        for n, proc in procs:
            out, _ = proc.communicate()
            line = [l for l in out.splitlines() if l.startswith("RESULT ")]
            if proc.returncode or not line:
                print(f"{n}: failed (exit {proc.returncode})", flush=True)
                continue
            r = json.loads(line[-1][len("RESULT "):])
            r["budget_s"], r["overrides"] = candidates()[n]
            results["runs"][n] = r
            print(f"{n}: val {r['val_loss']:.4f} ({r['steps']} steps, {r['params']:,} params)", flush=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
