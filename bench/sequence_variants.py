"""Two variants beside their baselines on Tiny Shakespeare, at one wall-clock budget each, through `genlab compare`:

    python bench/sequence_variants.py --data ../shared/data/tinyshakespeare.txt --seconds 180

- lstm vs lstm-carry: recipes/tinyshakespeare-lstm.toml from zero-state random windows (today's default)
  and with `train.carry_state = true` (truncated BPTT over consecutive windows, as char-rnn).
- fnet-learned vs fnet-fourier: recipes/tinyshakespeare-fnet.toml with its learned causal convolution
  (default) and with `model.mixing = "fourier"` (FNet's parameter-free DFT mixing, causal).

Same data, seed and split for all four; each measured the same way (genlab.workflows.compare: val loss and bits per
char over the whole val split). Writes bench/results/sequence_variants.json.
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
from genlab.core.config import build_config, save_config

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {
    "lstm": ("lstm", []),
    "lstm-carry": ("lstm", ["train.carry_state=true"]),
    "fnet-learned": ("fnet", []),
    "fnet-fourier": ("fnet", ["model.mixing=fourier"]),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"))
    p.add_argument("--seconds", type=float, default=180.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--out", default="/tmp/genlab-bench-variants")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)  # a fresh budget for every variant
    configs = Path(f"{out}-configs")
    configs.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in args.variants.split(","):
        family, sets = VARIANTS[name]
        config = build_config(ROOT / "recipes" / f"tinyshakespeare-{family}.toml", {}, sets)
        save_config(config, configs / f"{name}.toml")
        paths.append(str(configs / f"{name}.toml"))
    load = os.getloadavg()
    rows = compare(paths, out, data=args.data, max_time=args.seconds, sets=["train.eval_interval=50"], device="cpu", progress=False)
    print(format_table(rows))
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seconds_each": args.seconds,
               "threads": args.threads, "load_avg_at_start": load, "command": "python bench/sequence_variants.py --seconds "
               f"{args.seconds:g}", "rows": rows}
    dest = ROOT / "bench" / "results"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "sequence_variants.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
