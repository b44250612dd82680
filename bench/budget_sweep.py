"""The sweep behind the budget recipes, as `genlab sweep` calls: one grid per budget over LSTM width, dropout and
weight decay, on Tiny Shakespeare's first 90 % (`data.split = "tail"`, nanoGPT's cut).

    python bench/budget_sweep.py --data ../shared/data/tinyshakespeare.txt [--only 60,180] [--recipes DIR]

Each budget is one command, the one a user runs on their own data to make their own recipe:

    genlab sweep text --data DATA --model lstm --sampler grid --pruner none --max-time 180 \\
        --space model.n_embd=256,384 --space model.dropout=0.0,0.1 --set ... --out OUT --recipe best-3min.toml

Trials run one after another with the whole machine (`--threads auto`), so a trial's budget is the recipe's
budget; each is scored on the whole val split with the weights it kept (best val loss). Writes every trial to
bench/results/budget_sweep.json, and with --recipes DIR the best of each budget as DIR/lstm-<budget>s.toml
(recipes/budgets/ follow these winners, with comments and the named data set: docs/models.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "budget_sweep.json"
GENLAB = str(Path(sys.executable).with_name("genlab"))

FIXED = ["tokenizer.kind=char", "data.split=tail", "model.n_layer=2", "model.block_size=128", "train.lr=3e-3",
         "train.batch_size=32", "train.warmup_steps=100", "train.min_lr_ratio=0.1", "train.eval_batches=10",
         "train.checkpoint_interval=1000000", "train.sample_tokens=0", "train.keep=best"]
# budget (s) -> (the grid searched, eval interval)
GRIDS = {
    60: (["model.n_embd=192,256", "model.dropout=0.0,0.1"], 50),
    180: (["model.n_embd=256,384", "model.dropout=0.0,0.1"], 100),
    600: (["model.n_embd=256,384", "model.dropout=0.0,0.1,0.2", "train.weight_decay=0.0,0.1"], 200),
}


def sweep(budget: int, data: str, out: Path, recipes: Path | None) -> dict:
    grid, eval_interval = GRIDS[budget]
    command = [GENLAB, "sweep", "text", "--data", data, "--model", "lstm", "--sampler", "grid", "--pruner", "none",
               "--trials", "100", "--max-time", str(budget), "--threads", "auto", "--quiet", "--out", str(out),
               *[a for item in grid for a in ("--space", item)],
               *[a for item in [*FIXED, "train.max_steps=1000000", f"train.eval_interval={eval_interval}"] for a in ("--set", item)]]
    if recipes is not None:
        command += ["--recipe", str(recipes / f"lstm-{budget}s.toml")]
    print(" ".join(command[1:]), flush=True)
    subprocess.run(command, check=True)
    return json.loads((out / "sweep.json").read_text())


def trial_row(budget: int, trial: dict) -> tuple[str, dict]:
    """A trial in the table's terms: its name, steps, parameters and speed read from its run folder."""
    import genlab

    run = Path(trial["run"])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rates = [r["tok_per_s"] for r in rows if "tok_per_s" in r and r.get("step", 0) > 1]
    name = f"{budget}s lstm 2x{trial['model.n_embd']} d{trial.get('model.dropout', 0.0)}" + (
        f" wd{trial['train.weight_decay']}" if "train.weight_decay" in trial else "")
    return name, {"budget_s": budget, "val_loss": trial["value"], "steps": max(r.get("step", 0) for r in rows),
                  "params": genlab.load(run, device="cpu").parameter_count,
                  "median_tokens_per_s": statistics.median(rates) if rates else None,
                  "overrides": [f"{k}={v}" for k, v in trial.items() if "." in k], "run": str(run)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"))
    p.add_argument("--only", default=None, help="comma-separated budgets in seconds (default: all)")
    p.add_argument("--out", default="/tmp/genlab-bench-sweep")
    p.add_argument("--recipes", type=Path, default=None, help="write each budget's best as a recipe in this folder")
    args = p.parse_args()
    budgets = [int(b) for b in args.only.split(",")] if args.only else list(GRIDS)
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_avg_at_start": os.getloadavg(),
               "threads_per_run": os.cpu_count(), "parallel": 1, "cpus": os.cpu_count(), "method": "genlab sweep",
               "runs": {}}
    for budget in budgets:
        summary = sweep(budget, args.data, Path(args.out) / f"lstm-{budget}s", args.recipes)
        for trial in summary["trials"]:
            if trial["state"] == "complete":
                name, row = trial_row(budget, trial)
                results["runs"][name] = row
                print(f"{name}: val {row['val_loss']:.4f} ({row['steps']} steps, {row['params']:,} params)", flush=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
