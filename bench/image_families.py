"""Image families at the same wall-clock budget: FID, KID, precision, recall, training and sampling images/s,
and for diffusion DDIM at 10/25/50/100 steps against DDPM at every step (FID against sampling time).

    python bench/image_families.py --data digits --seconds 60 --n 500
    python bench/image_families.py --data /work/shared/data/mnist --seconds 90 --n 300

Writes bench/results/image_families_<data name>.json. Every run trains from scratch into a temp folder.
"""

from __future__ import annotations

import argparse
import json
import time
import os
import tempfile
from pathlib import Path

import torch

from genlab.api import load, train
from genlab.core.config import validate_config

MODELS = {
    "gan": {"name": "gan"},
    "dcgan": {"name": "dcgan"},
    "vae": {"name": "vae"},
    "ddpm": {"name": "ddpm"},
    "stylegan": {"name": "stylegan"},
    "pixelcnn": {"name": "pixelcnn"},
}


def training_rate(run_path: Path) -> float:
    rows = [json.loads(line) for line in (run_path / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rates = [r["img_per_s"] for r in rows if "img_per_s" in r and r["step"] > 1]
    return sum(rates) / len(rates) if rates else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="digits")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--n", type=int, default=500, help="generated images per FID")
    ap.add_argument("--families", default="gan,dcgan,stylegan,vae,ddpm,pixelcnn")
    ap.add_argument("--sweep", default="10,25,50,100", help="DDIM step counts compared with DDPM at every step")
    ap.add_argument("--ddpm-n", type=int, default=None, help="images for the DDPM-1000 row (default --n)")
    ap.add_argument("--channel-mult", default="1,2")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 because on a shared CPU two threads can run 30x slower (oversubscription)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    name = Path(args.data).name or args.data
    results = {"data": args.data, "seconds": args.seconds, "n": args.n, "threads": torch.get_num_threads(),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_avg_at_start": list(os.getloadavg()),
               "families": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families.split(","):
            model = dict(MODELS[family])
            if family == "ddpm":
                model["channel_mult"] = [int(m) for m in args.channel_mult.split(",")]
            tree = {"task": "image", "out": f"{tmp}/{family}", "data": {"source": args.data},
                    "model": model, "train": {"max_steps": 1_000_000, "max_time": args.seconds, "eval_interval": 100_000,
                                              "checkpoint_interval": 100_000, "progress": False}}
            run = train(validate_config(tree), progress=False)
            gen = load(run.path)
            row = {"train_steps": run.results["step"], "train_images_per_s": round(training_rate(run.path), 1)}
            if family == "ddpm":
                row["samplers"] = {}
                for steps in [int(s) for s in args.sweep.split(",")]:
                    r = gen.evaluate(n=args.n, sampler="ddim", steps=steps, progress=False)
                    row["samplers"][f"ddim{steps}"] = r
                    print(family, f"ddim{steps}", {k: r[k] for k in ("fid", "kid", "precision", "recall", "sampling_images_per_s")}, flush=True)
                r = gen.evaluate(n=args.ddpm_n or args.n, sampler="ddpm", progress=False)
                row["samplers"]["ddpm1000"] = r
                print(family, "ddpm1000", {k: r[k] for k in ("fid", "kid", "precision", "recall", "sampling_images_per_s")}, flush=True)
                row |= row["samplers"]["ddim50"] if "ddim50" in row["samplers"] else r
            else:
                row |= gen.evaluate(n=args.n, progress=False)
            results["families"][family] = row
            print(family, {k: row.get(k) for k in ("train_steps", "train_images_per_s", "fid", "kid", "precision", "recall", "sampling_images_per_s")}, flush=True)
            dest = Path(__file__).parent / "results" / f"image_families_{name}.json"
            dest.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
