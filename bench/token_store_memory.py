"""Peak memory of `genlab train text` on a corpus much larger than its model: flat, not proportional to the file.

    python bench/token_store_memory.py [--mb 400]

Writes bench/results/token_store_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_corpus(path: Path, megabytes: int) -> None:
    rng = random.Random(0)
    words = [w for w in open(__file__).read().split() if w.isalpha()][:200] or ["word"]
    line = lambda: " ".join(rng.choice(words) for _ in range(12)) + "\n"
    block = "".join(line() for _ in range(20000))
    with open(path, "w") as f:
        while f.tell() < megabytes * 1e6:
            f.write(block)


def main() -> None:
    load_at_start = list(os.getloadavg())  # stated beside the figures: a busy machine understates them
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mb", type=int, default=400)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        write_corpus(corpus, args.mb)
        size = corpus.stat().st_size
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "genlab", "train", "text", "--data", str(corpus), "--out", f"{tmp}/run",
               "--max-steps", "20", "--quiet", "--set", "model.n_layer=2", "--set", "model.n_embd=64"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    run = {"corpus_mb": round(size / 1e6, 1), "peak_rss_mb": round(peak_mb, 1), "wall_s": round(wall, 1),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_avg_at_start": load_at_start}
    out = Path(__file__).parent / "results" / "token_store_memory.json"
    result = json.loads(out.read_text()) if out.is_file() else {}
    runs = [r for r in result.get("runs", []) if abs(r["corpus_mb"] - run["corpus_mb"]) > 0.2 * run["corpus_mb"]] + [run]
    result = {"command": "python bench/token_store_memory.py --mb N",
              "child": " ".join(["genlab", *cmd[3:6], "CORPUS", "--out", "RUN", *cmd[9:]]),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores", "runs": sorted(runs, key=lambda r: r["corpus_mb"])}
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
