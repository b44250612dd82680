"""Does every family learn something in a short budget? Each family's defaults, 150 s on this machine.

    python bench/short_budget.py [--seconds 150] [--families gpt,lstm,gru,rnn,fnet,pixelcnn,wavenet] [--audio FOLDER]

Text families train on Tiny Shakespeare (`genlab train text --data ... --model F --max-time S`, nothing else set)
and are scored in bits per character at the last eval (the whole val split where the budget leaves room for it,
else the periodic eval's batches), beside the val split's own unigram entropy (what a model that ignores context
reaches). PixelCNN trains on the MNIST test set (../shared/data/mnist) and is scored in
bits per dimension beside the pixel-value histogram's entropy. WaveNet trains on --audio (a folder of sound
files; default `bach-audio`, Bach chorales rendered by FluidSynth, as no speech is on this machine) and is scored
in bits per sample beside the val split's mu-law sample histogram. Target (issue 36): below the unigram within
150 s on 2 cores. Writes bench/results/short_budget.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "short_budget.json"
TEXT = ("gpt", "lstm", "gru", "rnn", "fnet")


def entropy_bits(values: np.ndarray) -> float:
    counts = np.bincount(values.reshape(-1))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def run_family(family: str, seconds: float, out: Path, audio: str = "bach-audio") -> dict:
    import genlab
    from genlab.datasets.images import ImageStore
    from genlab.datasets.token_store import TokenStore

    text, sound = family in TEXT, family == "wavenet"
    data = audio if sound else str(ROOT.parent / "shared" / "data" / ("tinyshakespeare.txt" if text else "mnist"))
    task = "text" if text else "audio" if sound else "image"
    tree = {"task": task, "out": str(out / family), "data": {"source": data},
            "model": {"name": family}, "train": {"max_time": seconds, "max_steps": 10_000_000, "progress": False}}
    started = time.perf_counter()
    run = genlab.train(tree, progress=False, overwrite=True)
    wall = time.perf_counter() - started
    rows = run.path.joinpath("metrics.jsonl").read_text().splitlines()
    scores = [json.loads(r) for r in rows]
    if text or sound:
        key, unit = ("val_bits_per_char", "bits per char") if text else ("val_bits_per_sample", "bits per sample")
        final = next((r["final_" + key] for r in reversed(scores) if "final_" + key in r), None)
        score = final if final is not None else next(r[key] for r in reversed(scores) if key in r)
        baseline = entropy_bits(TokenStore(run.path / "data").split("val"))
    else:
        key = "val_bits_per_dim"
        final = next((r["final_" + key] for r in reversed(scores) if "final_" + key in r), None)
        score = final if final is not None else next(r[key] for r in reversed(scores) if key in r)
        store = ImageStore(run.path / "data")
        baseline = entropy_bits(np.asarray(store.images)[store.indices("val")])
        unit = "bits per dim"
    return {"family": family, "steps": run.results["step"], "wall_seconds": round(wall, 1), "score": score,
            "whole_val_split": final is not None, "unigram": baseline, "unit": unit,
            "beats_unigram": bool(score < baseline),
            "planned_steps": next((r["planned_steps"] for r in reversed(scores) if "planned_steps" in r), None)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=150.0)
    p.add_argument("--families", default="gpt,lstm,gru,rnn,fnet,pixelcnn,wavenet")
    p.add_argument("--audio", default="bach-audio", help="sound files for WaveNet (a folder), or bach-audio")
    p.add_argument("--out", default="/tmp/genlab-bench-short")
    args = p.parse_args()
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_avg_at_start": list(os.getloadavg()),
               "command": f"python bench/short_budget.py --seconds {args.seconds:g} --families {args.families}"
                          + (f" --audio {args.audio}" if args.audio != "bach-audio" else ""),
               "seconds": args.seconds, "rows": []}
    # Rows of families not run now are kept from the last run (each row says when it was measured).
    kept = json.loads(RESULTS.read_text()) if RESULTS.is_file() else None
    if kept and kept.get("seconds") == args.seconds:
        results["rows"] = [r | {"date": r.get("date", kept["date"]), "load_avg_at_start": r.get("load_avg_at_start", kept["load_avg_at_start"])}
                           for r in kept["rows"] if r["family"] not in args.families.split(",")]
    for family in args.families.split(","):
        load_avg, started = list(os.getloadavg()), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        row = run_family(family, args.seconds, Path(args.out), args.audio)
        row |= {"date": started, "load_avg_at_start": load_avg} | ({"data": args.audio} if family == "wavenet" else {})
        print(json.dumps(row), flush=True)
        results["rows"].append(row)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
