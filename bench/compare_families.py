"""Every sequence family on Tiny Shakespeare at the same wall-clock budget, through `genlab compare`.

    python bench/compare_families.py --data ../shared/data/tinyshakespeare.txt --seconds 180 [--threads 2]

Trains recipes/tinyshakespeare-{gpt,fnet,lstm,gru,rnn,ngram}.toml with their time
budget replaced by --seconds (the n-gram only counts), on the same data, seed
and split, then measures each run the same way (genlab.workflows.compare): parameters,
val loss and bits per char over the whole val split, train tokens/s, sample
tokens/s at batch 1, training wall time. Writes
bench/results/compare_families.json and bench/results/compare_families.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import torch

from genlab.workflows.compare import compare, format_table

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = ["gpt", "fnet", "lstm", "gru", "rnn", "ngram"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"))
    p.add_argument("--seconds", type=float, default=180.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-interval", type=int, default=25, help="steps between the curve's evals")
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--out", default="/tmp/genlab-bench-compare")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)  # a fresh budget for every family
    load = os.getloadavg()
    recipes = [str(ROOT / "recipes" / f"tinyshakespeare-{f}.toml") for f in args.families.split(",")]
    # Evaluate often enough for a curve whatever a family's step time is.
    rows = compare(recipes, out, data=args.data, max_time=args.seconds, sets=[f"train.eval_interval={args.eval_interval}"],
                   device="cpu", progress=False)
    print(format_table(rows))
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seconds_each": args.seconds,
               "threads": args.threads, "load_avg_at_start": load, "rows": rows}
    dest = ROOT / "bench" / "results"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "compare_families.json").write_text(json.dumps(results, indent=2) + "\n")
    shutil.copyfile(out / "val_loss.png", dest / "compare_families.png")


if __name__ == "__main__":
    main()
