"""genlab against nanoGPT at equal wall-clock budgets, on nanoGPT's own split of Tiny Shakespeare.

    python bench/vs_nanogpt.py [--budgets 60,180,600] [--long] [--threads 2] [--peer ../shared/peers/nanoGPT]

For each budget, one after another in this one process tree:
  nanogpt      the peer's own train.py and model.py (copied to a scratch folder, run as a subprocess,
               never imported into genlab) with its README's CPU config: 4x128, 4 heads, context 64,
               batch 12, no dropout, lr 1e-3, fp32. Its iterations are set so that its cosine schedule
               ends at the budget (from a 60-iteration calibration run); it saves ckpt.pt only when its
               val estimate improves, so the weights scored are its best ones, as the issue asks.
  genlab best  recipes/budgets/tinyshakespeare-lstm-<budget>.toml (the LSTM family: the best at these budgets)
  genlab gpt   recipes/budgets/tinyshakespeare-gpt-<budget>.toml
Every model is scored the same way on the whole val split (the file's last 10 %, nanoGPT's cut):
non-overlapping windows of the model's own context, each token predicted once (eval_windows).
`--long` adds the 1,200 s budget. Without the peer folder the bench says so and runs genlab alone.
Writes bench/results/vs_nanogpt.json and bench/results/vs_nanogpt.png (val loss against seconds).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from text_train import train_run  # noqa: E402  (a sibling bench: train a config, score the whole val split)

RESULTS = ROOT / "bench" / "results" / "vs_nanogpt.json"
RECIPE = {60: "1min", 180: "3min", 600: "10min", 1200: "20min"}
# nanoGPT's README, "I only have a macbook": its CPU shape, with fp32 and no compile on this CPU.
NANOGPT_FLAGS = ["--device=cpu", "--compile=False", "--dtype=float32", "--eval_iters=20", "--log_interval=1",
                 "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128", "--dropout=0.0"]


def prepare_peer(peer: Path, data: Path, work: Path) -> Path:
    """The peer's files in a scratch folder, with its char dataset made by its own prepare.py from `data`."""
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(peer, work, ignore=shutil.ignore_patterns(".git", "out*", "*.bin", "*.pkl"))
    prep = work / "data" / "shakespeare_char"
    shutil.copyfile(data, prep / "input.txt")  # present, so prepare.py does not download
    subprocess.run([sys.executable, "prepare.py"], cwd=prep, check=True, stdout=subprocess.DEVNULL)
    return work


def run_peer(work: Path, iters: int, out: str, threads: int, limit: float | None = None) -> dict:
    """Run nanoGPT's train.py; -> median ms per iteration (past the first 10, its warm-up), eval curve stamped with
    seconds since launch, wall time."""
    cmd = [sys.executable, "train.py", "config/train_shakespeare_char.py", *NANOGPT_FLAGS, f"--out_dir={out}",
           f"--max_iters={iters}", f"--lr_decay_iters={iters}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    iter_ms, curve, first_iter = [], [], None
    killed = False
    for line in proc.stdout:
        now = time.perf_counter() - start
        if m := re.match(r"iter (\d+): loss [\d.]+, time ([\d.]+)ms", line):
            iter_ms.append(float(m.group(2)))
            first_iter = first_iter if first_iter is not None else now
        elif m := re.match(r"step (\d+): train loss ([\d.]+), val loss ([\d.]+)", line):
            curve.append((now, float(m.group(3)), int(m.group(1))))
        if limit is not None and now > limit and not killed:  # a safety net: the schedule should end first
            proc.terminate()
            killed = True
    proc.wait()
    if proc.returncode and not killed:
        raise RuntimeError(f"nanoGPT's train.py exited with {proc.returncode}: {' '.join(cmd)}")
    return {"median_iter_ms": float(np.median(iter_ms[10:] or iter_ms)), "iterations_logged": len(iter_ms), "curve": curve,
            "wall_seconds": time.perf_counter() - start, "startup_seconds": first_iter, "killed_at_limit": killed}


def score_peer(work: Path, out: str) -> dict:
    """nanoGPT's saved (best-val) checkpoint over its whole val split."""
    from genlab.datasets.token_store import eval_windows

    sys.path.insert(0, str(work))
    try:
        from model import GPT, GPTConfig  # the peer's model.py, for scoring only
    finally:
        sys.path.pop(0)
    ckpt = torch.load(work / out / "ckpt.pt", map_location="cpu", weights_only=True)
    model = GPT(GPTConfig(**ckpt["model_args"]))
    model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()})
    model.eval()
    val = np.fromfile(work / "data" / "shakespeare_char" / "val.bin", dtype=np.uint16).astype(np.int64)
    nats, count = 0.0, 0
    with torch.no_grad():
        for x, y in eval_windows(val, ckpt["model_args"]["block_size"], 64):
            logits, _ = model(x, y)
            nats += float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-1,
                                                            reduction="sum"))
            count += int((y >= 0).sum())
    return {"val_loss": nats / count, "val_bits_per_char": nats / count / math.log(2), "tokens": count,
            "iter_saved": int(ckpt["iter_num"]), "own_best_val": float(ckpt["best_val_loss"]),
            "params": sum(p.numel() for p in model.parameters())}


def nanogpt_at(work: Path, budget: float, threads: int) -> dict:
    """Calibrate nanoGPT's iteration time, then train it so that its schedule ends at `budget` seconds of training."""
    ms = run_peer(work, 60, "out-calibrate", threads)["median_iter_ms"]
    # each eval (every 250 iterations): 2 splits x 20 batches of forward only, about a third of a step each
    per_iter = ms / 1000 * (1 + 2 * 20 / 3 / 250)
    iters = max(250, 250 * round(budget / per_iter / 250))  # it evaluates (and may save) every 250 iterations
    r = run_peer(work, iters, f"out-{int(budget)}", threads, limit=1.2 * budget + 60)
    r.update(score_peer(work, f"out-{int(budget)}"), iters=iters, calibrated_ms_per_iter=ms)
    r["train_seconds"] = r["wall_seconds"] - (r["startup_seconds"] or 0.0)
    r["curve"] = [(t - (r["startup_seconds"] or 0.0), v) for t, v, _ in r["curve"]]
    return r


def genlab_at(recipe: str, data: str, out: Path, budget: float) -> dict:
    r = train_run(ROOT / "recipes" / "budgets" / f"tinyshakespeare-{recipe}.toml", data, out, [], max_time=budget)
    r["recipe"] = f"recipes/budgets/tinyshakespeare-{recipe}.toml"
    return r


def plot(results: dict, dest: Path) -> None:
    from genlab.media.plots import new_figure, save_figure

    fig, ax = new_figure(8, 4.8)
    colors = {"nanogpt": "tab:gray", "genlab_best": "tab:blue", "genlab_gpt": "tab:orange"}
    for budget, row in sorted(results["budgets"].items(), key=lambda kv: int(kv[0])):
        for who, r in row.items():
            if who not in colors:  # the budget's date and load average
                continue
            if r.get("curve"):
                xs, ys = zip(*r["curve"])
                ax.plot(xs, ys, color=colors[who], alpha=0.35 + 0.65 * int(budget) / 1200, linewidth=1,
                        label=f"{who} ({budget} s)")
            ax.plot([r["train_seconds"]], [r["val_loss"]], marker="o", color=colors[who])
    ax.set_xlabel("training seconds (2 CPU cores)")
    ax.set_ylabel("val loss (nats/char)")
    ax.set_title("lines: each tool's periodic val estimate; dots: the kept weights on the whole val split", fontsize=9)
    ax.set_ylim(1.3, 2.2)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=3)
    save_figure(fig, dest)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"))
    p.add_argument("--peer", default=str(ROOT.parent / "shared" / "peers" / "nanoGPT"))
    p.add_argument("--budgets", default="60,180,600")
    p.add_argument("--long", action="store_true", help="add the 1,200 s budget")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", default="nanogpt,genlab_best,genlab_gpt")
    p.add_argument("--out", default="/tmp/genlab-bench-vs-nanogpt")
    p.add_argument("--plot", action="store_true", help="only redraw the plot from the stored results")
    args = p.parse_args()
    if args.plot:
        return plot(json.loads(RESULTS.read_text()), RESULTS.with_suffix(".png"))
    torch.set_num_threads(args.threads)
    budgets = [int(b) for b in args.budgets.split(",")] + ([1200] if args.long else [])
    who = args.only.split(",")
    peer = Path(args.peer)
    if "nanogpt" in who and not (peer / "train.py").is_file():
        print(f"nanoGPT peer not found at {peer}: running genlab alone", flush=True)
        who.remove("nanogpt")
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"budgets": {}}
    results.update(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), load_avg_at_start=os.getloadavg(),
                   threads=args.threads, cpus=os.cpu_count(), torch=torch.__version__,
                   nanogpt_flags=NANOGPT_FLAGS, peer_found="nanogpt" in who)
    out = Path(args.out)
    work = prepare_peer(peer, Path(args.data), out / "nanogpt") if "nanogpt" in who else None
    for budget in budgets:
        row = results["budgets"].setdefault(str(budget), {})
        row.update(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), load_avg_at_start=os.getloadavg())
        for name in who:
            if name == "nanogpt":
                r = nanogpt_at(work, budget, args.threads)
            else:
                family = "lstm" if name == "genlab_best" else "gpt"
                r = genlab_at(f"{family}-{RECIPE[budget]}", args.data, out / f"{family}-{budget}", budget)
            r["load_avg_after"] = os.getloadavg()
            row[name] = r
            print(f"{budget} s {name}: val {r['val_loss']:.4f} on the whole val split ({r['train_seconds']:.0f} s training)",
                  flush=True)
            RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    plot(results, RESULTS.with_suffix(".png"))


if __name__ == "__main__":
    main()
