"""WaveNet on `bach-audio`: bits per sample after 10 and 30 CPU minutes, and fast against naive generation.

    python bench/audio_wavenet.py [--minutes 30] [--threads 1]

Trains the default WaveNet (2 stacks x 10 layers, 64 residual / 128 skip channels, receptive field 2,047
samples = 128 ms at 16 kHz) on `bach-audio` (60 chorales rendered by FluidSynth) with one thread for
--minutes, so wall minutes are CPU minutes, evaluating every 100 steps. Reports the periodic val bits per
sample nearest to 10 minutes and at the end (one run: the 10-minute figure is under the 30-minute learning
rate schedule), the kept weights on the whole val split, and the entropy of the training split's sample
histogram (the bits per sample of a model that ignores the past). Then generation: seconds of sound per second
with the ring-buffer cache, and without it (every sample recomputed over the receptive field), from the same
prime. Writes bench/results/audio_wavenet.json and a continuation (WAV + spectrogram) beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "audio_wavenet.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="/tmp/genlab-bench-wavenet")
    args = p.parse_args()
    import torch

    import genlab
    from genlab.core.config import build_config
    from genlab.datasets.token_store import TokenStore
    from genlab.core.runs import RunDir
    from genlab.tasks.audio import unigram_bits

    torch.set_num_threads(args.threads)
    load_avg = list(os.getloadavg())
    sets = [f"train.max_time={args.minutes * 60}", "train.eval_interval=100", "train.checkpoint_interval=100",
            "train.sample_tokens=4000", "train.progress=false", f"train.threads={args.threads}"]
    config = build_config(None, {"data": "bach-audio", "out": args.out}, sets, base={"task": "audio"})
    run = genlab.train(config, progress=False, overwrite=True)
    rows = RunDir(run.path).read_metrics()
    evals = [r for r in rows if "val_bits_per_sample" in r]
    at_10 = min(evals, key=lambda r: abs(r["elapsed"] - 600))
    store = TokenStore(run.path / "data")
    rates = [r["tok_per_s"] for r in rows if "tok_per_s" in r]

    gen = genlab.load(run.path)
    prime = gen.tokenizer.decode(store.split("val")[:16000])  # one second of held-out sound
    timings = {}
    for cached, samples in ((True, 16000), (False, 200)):
        t0 = time.perf_counter()
        out = gen.generate(prime, max_new_tokens=samples, seed=0, use_cache=cached)[0]
        timings[cached] = samples / (time.perf_counter() - t0)
        if cached:
            gen.save_sample(out, RESULTS.with_name("audio_wavenet_continuation"))
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_avg_at_start": load_avg,
        "command": f"python bench/audio_wavenet.py --minutes {args.minutes:g} --threads {args.threads}",
        "threads": args.threads, "parameters": gen.model.num_params(), "receptive_field": gen.model.receptive_field,
        "sample_rate": gen.sample_rate, "train_samples": int(len(store.split("train"))), "val_samples": int(len(store.split("val"))),
        "unigram_bits_per_sample": round(unigram_bits(store.split("train"), gen.tokenizer.vocab_size), 4),
        "at_10_min": {"elapsed": at_10["elapsed"], "step": at_10["step"], "val_bits_per_sample": at_10["val_bits_per_sample"]},
        "at_end": {"elapsed": evals[-1]["elapsed"], "step": evals[-1]["step"], "val_bits_per_sample": evals[-1]["val_bits_per_sample"]},
        "final_val_bits_per_sample": next((r["final_val_bits_per_sample"] for r in rows if "final_val_bits_per_sample" in r), None),
        "train_samples_per_s": sorted(rates)[len(rates) // 2] if rates else None,
        "generate_samples_per_s": {"cached": round(timings[True], 1), "naive": round(timings[False], 2)},
        "generate_seconds_of_sound_per_s": {"cached": round(timings[True] / gen.sample_rate, 4), "naive": round(timings[False] / gen.sample_rate, 6)},
        "speedup": round(timings[True] / timings[False], 1),
    }
    print(json.dumps(results, indent=2))
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
