"""Threads on a busy machine: `--threads 1`, `2` and the default `auto`, on an idle machine and beside two busy
processes, for training and for sampling.

    python bench/threads_busy.py [--seconds 20]

Each measurement is a fresh process (as a user's command is): training a char GPT of the README's default
size on 1 MB of the standard library's docstrings for --seconds of training time (steps counted), and
sampling 200 characters from the trained run (seconds, in-process, after loading). "busy" runs two Python
processes spinning beside it, one per core of this 2-core machine. Also on the idle machine: 2 threads with
OpenMP's wait policy PASSIVE against the default. Writes bench/results/threads_busy.json. The target: the
default within 1.2x of the better of 1 and 2 threads when busy, and no slower than 2 threads when idle.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "threads_busy.json"
GENLAB = str(Path(sys.executable).with_name("genlab"))
SAMPLE = ("import sys, time, genlab, genlab.core.threads as t; n = t.use(sys.argv[2]); gen = genlab.load(sys.argv[1], device='cpu');"
          "gen.generate('Return the', max_new_tokens=20, seed=0); s = time.perf_counter();"
          "gen.generate('Return the', max_new_tokens=200, seed=1); print(time.perf_counter() - s, n)")


def corpus(folder: Path) -> Path:
    from genlab.datasets.named import resolve_source

    source = resolve_source("python-docs", False)
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    text = "".join(f.read_text(encoding="utf-8", errors="replace") for f in files)[:1_000_000]
    path = folder / "docs.txt"
    path.write_text(text, encoding="utf-8")
    return path


def train_steps(data: Path, out: Path, threads: str, seconds: float, env: dict) -> dict:
    cmd = [GENLAB, "train", "text", "--data", str(data), "--out", str(out), "--overwrite", "--max-time", str(seconds),
           "--threads", threads, "--quiet", "--set", "train.eval_interval=100000", "--set", "train.eval_batches=1"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    chosen = next(r["threads"] for r in rows if "threads" in r)
    return {"steps": max(r["step"] for r in rows), "threads_used": chosen}


def sample_seconds(run: Path, threads: str, env: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", SAMPLE, str(run), threads], capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    seconds, used = done.stdout.split()
    return {"seconds": float(seconds), "threads_used": int(used)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0)
    args = p.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_avg_at_start": list(os.getloadavg()),
              "command": " ".join(["python"] + sys.argv), "cores": len(os.sched_getaffinity(0)), "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = corpus(folder)
        for scenario in ("idle", "busy"):
            spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 if scenario == "busy" else 0)]
            try:
                time.sleep(1.0 if spinners else 0)
                for threads in ("1", "2", "auto"):
                    run = folder / f"run-{scenario}-{threads}"
                    row = {"scenario": scenario, "threads": threads, "train": train_steps(data, run, threads, args.seconds, env),
                           "sample": sample_seconds(run, threads, env)}
                    print(json.dumps(row), flush=True)
                    result["rows"].append(row)
                if scenario == "idle":
                    run = folder / "run-idle-passive"
                    passive = dict(env, OMP_WAIT_POLICY="PASSIVE")
                    row = {"scenario": "idle", "threads": "2, OMP_WAIT_POLICY=PASSIVE",
                           "train": train_steps(data, run, "2", args.seconds, passive), "sample": sample_seconds(run, "2", passive)}
                    print(json.dumps(row), flush=True)
                    result["rows"].append(row)
            finally:
                for s in spinners:
                    s.kill()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
