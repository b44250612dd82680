"""Word-level against character-level text at the same wall clock, in bits per character.

    python bench/word_vs_char.py [--data ../shared/data/tinyshakespeare.txt] [--seconds 120]

Trains the tinyshakespeare GPT and LSTM recipes twice each for --seconds, once on characters and once on
words (`--tokenizer word`, 8,192 most frequent pieces), both with `data.split = "tail"` (the last 10 % of the
tokens held out: nearly the same text for both, not exactly, since the cut falls on a token), and reports the
kept weights' val loss over the whole val split in bits per character (a word token's loss is divided by the
characters it stands for), the share of unknown words, and training tokens/s. Writes
bench/results/word_vs_char.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "word_vs_char.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"))
    p.add_argument("--seconds", type=float, default=120.0)
    p.add_argument("--out", default="/tmp/genlab-bench-word")
    args = p.parse_args()
    import genlab
    from genlab.core.config import build_config
    from genlab.datasets.token_store import TokenStore
    from genlab.core.runs import RunDir

    load_avg = list(os.getloadavg())
    rows = []
    for recipe in ("tinyshakespeare-gpt.toml", "tinyshakespeare-lstm.toml"):
        for kind in ("char", "word"):
            sets = [f"train.max_time={args.seconds}", "train.progress=false", "data.split=tail", f"tokenizer.kind={kind}",
                    "tokenizer.vocab_size=8192"]
            config = build_config(ROOT / "recipes" / recipe, {"data": args.data, "out": str(Path(args.out) / f"{recipe}-{kind}")}, sets)
            run = genlab.train(config, progress=False, overwrite=True)
            val = TokenStore(run.path / "data").split("val")
            rates = [r["tok_per_s"] for r in RunDir(run.path).read_metrics() if "tok_per_s" in r]
            row = {"recipe": recipe, "tokenizer": kind, "steps": run.results["step"], "val_bits_per_char": run.results["val_bits_per_char"],
                   "val_tokens": int(len(val)), "unknown_share": float((val <= 1).mean()) if kind == "word" else 0.0,
                   "train_tokens_per_s": sorted(rates)[len(rates) // 2] if rates else None}
            print(row, flush=True)
            rows.append(row)
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_avg_at_start": load_avg,
               "command": f"python bench/word_vs_char.py --seconds {args.seconds:g}", "rows": rows}
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
