"""Peak memory of `genlab train text` on a corpus much larger than its model: flat, not proportional to the file;
and how fast the corpus is tokenized into the token store on 1 and 2 processes (the same store either way).

    python bench/token_store_memory.py [--mb 400] [--speed-mb 1000] [--tokenizer char|bpe]

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


def tokenizing_speed(megabytes: int, kind: str) -> dict:
    """Tokens per second of tokenizing a generated corpus into a token store (read, encode, write, split) with the
    tokenizer trained once beforehand, on 1 and on 2 processes, taking turns."""
    from genlab.core.config import build_config
    from genlab.datasets.text import read_text_pieces
    from genlab.datasets.token_store import TokenStore
    from genlab.tokenizers import save_tokenizer, train_tokenizer
    from genlab.tokenizers.parallel import encode_documents

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        write_corpus(corpus, megabytes)
        tokenizer = train_tokenizer(kind, read_text_pieces(corpus), build_config(None, {}, [f"tokenizer.kind={kind}"]).tokenizer)
        save_tokenizer(tokenizer, Path(tmp) / "tokenizer.json")
        seconds = {1: [], 2: []}
        for _ in range(2):
            for workers in (1, 2):
                t0 = time.perf_counter()
                encoded = encode_documents(tokenizer, Path(tmp) / "tokenizer.json", [read_text_pieces(corpus)], workers)
                store = TokenStore.build(Path(tmp) / f"store{workers}", encoded, tokenizer.vocab_size,
                                         tokenizer.unit_lengths(), 0.1, 0.0, 1024, 0)
                seconds[workers].append(time.perf_counter() - t0)
                tokens = sum(len(store.split(s)) for s in ("train", "val"))
        best = {w: min(v) for w, v in seconds.items()}
        return {"corpus_mb": round(corpus.stat().st_size / 1e6, 1), "tokenizer": kind, "tokens": tokens,
                "tokens_per_s": {str(w): round(tokens / s) for w, s in best.items()}, "speedup_2_vs_1": round(best[1] / best[2], 2),
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_avg_at_start": list(os.getloadavg())}


def main() -> None:
    load_at_start = list(os.getloadavg())  # stated beside the figures: a busy machine understates them
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mb", type=int, default=400)
    ap.add_argument("--speed-mb", type=int, default=0, help="also time tokenizing a corpus this large on 1 and 2 processes")
    ap.add_argument("--tokenizer", default="char", help="the tokenizer of the speed measurement: char or bpe")
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
    speed = result.get("tokenizing", [])
    if args.speed_mb:
        measured = tokenizing_speed(args.speed_mb, args.tokenizer)
        speed = [r for r in speed if r["tokenizer"] != measured["tokenizer"]] + [measured]
    result = {"command": "python bench/token_store_memory.py --mb N [--speed-mb M --tokenizer KIND]", "tokenizing": speed,
              "child": " ".join(["genlab", *cmd[3:6], "CORPUS", "--out", "RUN", *cmd[9:]]),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores", "runs": sorted(runs, key=lambda r: r["corpus_mb"])}
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
