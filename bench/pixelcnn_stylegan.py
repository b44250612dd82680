"""The two newer image families, measured as issue 24 asks.

    python bench/pixelcnn_stylegan.py pixelcnn [--minutes 20] [--binary-minutes 10]
    python bench/pixelcnn_stylegan.py stylegan [--minutes 20] [--digits-minutes 5]

pixelcnn: the default Gated PixelCNN on MNIST (../shared/data/mnist: the 10,000 test images; 8,000 train, the
other 2,000 scored, `data.val_fraction = 0.2`) for --minutes with one thread, the val bits per dimension of the
periodic evals nearest 10 minutes and at the end (one run: the 10-minute figure is under the 20-minute
schedule) and of the kept weights over all 2,000 held-out images; then binarized (`model.levels = 2`, pixels
thresholded at mid-grey) for --binary-minutes, in nats per image beside the published 81.3 (van den Oord et al.
2016, on the 60,000-image training set, dynamically binarized: not the same protocol; said beside the figure).

stylegan: StyleGAN and DCGAN with their defaults, each for --minutes on MNIST and --digits-minutes on
`digits`, one thread each; FID (genlab's classifier features, 2,000 generated against the real images),
training and sampling images/s, and StyleGAN's FID at truncation 1.0, 0.7 and 0.5.

Writes bench/results/pixelcnn_mnist.json or stylegan_vs_dcgan.json, and the pictures docs/images.md shows.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
MNIST = ROOT.parent / "shared" / "data" / "mnist"


def train_image(model: dict, data: str, minutes: float, out: str, **data_options):
    import genlab
    from genlab.core.config import validate_config

    tree = {"task": "image", "out": out, "data": {"source": data, **data_options},
            "model": model, "train": {"max_steps": 10_000_000, "max_time": minutes * 60, "eval_interval": 200,
                                      "checkpoint_interval": 200, "progress": False, "threads": 1}}
    return genlab.train(validate_config(tree), progress=False, overwrite=True)


def rows_of(run) -> list[dict]:
    from genlab.core.runs import RunDir

    return RunDir(run.path).read_metrics()


def median_rate(rows: list[dict]) -> float | None:
    rates = sorted(r["img_per_s"] for r in rows if "img_per_s" in r and r["step"] > 1)
    return rates[len(rates) // 2] if rates else None


def bench_pixelcnn(args) -> dict:
    import genlab
    from genlab.media.grids import make_grid, save_png

    out = {}
    for name, levels, minutes in (("256_levels", 256, args.minutes), ("binarized", 2, args.binary_minutes)):
        run = train_image({"name": "pixelcnn", "levels": levels}, str(MNIST), minutes, f"/tmp/genlab-bench-pixelcnn-{levels}",
                          val_fraction=0.2)
        rows = rows_of(run)
        evals = [r for r in rows if "val_bits_per_dim" in r]
        at_10 = min(evals, key=lambda r: abs(r["elapsed"] - 600))
        final = next(r for r in rows if "final_val_loss" in r)
        gen = genlab.load(run.path)
        t0 = time.perf_counter()
        images = gen.generate_array(16, seed=0)
        sampling = 16 / (time.perf_counter() - t0)
        if levels == 256:  # the picture docs/images.md shows
            save_png(make_grid(images, 8), ROOT / "docs" / "img" / "pixelcnn_mnist_256_levels.png")
        keys = ["val_bits_per_dim"] + (["val_nats_per_image"] if levels == 2 else [])
        out[name] = {
            "levels": levels, "minutes": minutes, "steps": run.results["step"], "train_images_per_s": median_rate(rows),
            "at_10_min": {"elapsed": at_10["elapsed"], **{k: at_10[k] for k in keys}},
            "at_end": {"elapsed": evals[-1]["elapsed"], **{k: evals[-1][k] for k in keys}},
            "final_all_2000": {k: final["final_" + k] for k in keys if "final_" + k in final},
            "sampling_images_per_s": round(sampling, 3), "parameters": sum(p.numel() for p in gen.model.parameters()),
        }
        print(name, out[name], flush=True)
    return out


def bench_stylegan(args) -> dict:
    import genlab
    from genlab.media.grids import make_grid, save_png

    out = {}
    for data, minutes in ((str(MNIST), args.minutes), ("digits", args.digits_minutes)):
        label = "mnist" if data == str(MNIST) else "digits"
        if args.only and label != args.only:
            continue
        for family in ("stylegan", "dcgan"):
            load_avg, started = list(os.getloadavg()), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            run = train_image({"name": family}, data, minutes, f"/tmp/genlab-bench-{family}-{label}")
            rows = rows_of(run)
            gen = genlab.load(run.path)
            row = {"minutes": minutes, "steps": run.results["step"], "train_images_per_s": median_rate(rows),
                   "parameters": sum(p.numel() for p in gen.model.parameters()), "date": started,
                   "load_avg_at_start": load_avg}
            for psi in ((1.0, 0.7, 0.5) if family == "stylegan" else (None,)):
                r = gen.evaluate(n=2000, progress=False, truncation=psi)
                key = "fid" if psi in (None, 1.0) else f"fid_truncation_{psi}"
                row[key] = r["fid"]
                if psi in (None, 1.0):
                    row |= {"kid": r["kid"], "precision": r["precision"], "recall": r["recall"],
                            "sampling_images_per_s": r["sampling_images_per_s"]}
            out[f"{family}_{label}"] = row
            print(family, label, row, flush=True)
            if family == "stylegan":
                save_png(make_grid(gen.style_mix(4, 6, seed=1, truncation=0.7), 7),
                         ROOT / "docs" / "img" / f"stylegan_{label}_style_mix.png")
            save_png(make_grid(gen.generate_array(40, seed=0), 10), ROOT / "docs" / "img" / f"{family}_{label}.png")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=["pixelcnn", "stylegan"])
    p.add_argument("--minutes", type=float, default=20.0)
    p.add_argument("--binary-minutes", type=float, default=10.0)
    p.add_argument("--digits-minutes", type=float, default=5.0)
    p.add_argument("--only", choices=["mnist", "digits"], default=None,
                   help="stylegan: measure one data set, keeping the other's stored rows")
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    load_avg = list(os.getloadavg())
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = bench_pixelcnn(args) if args.part == "pixelcnn" else bench_stylegan(args)
    flags = (f"--minutes {args.minutes:g} --binary-minutes {args.binary_minutes:g}" if args.part == "pixelcnn"
             else f"--minutes {args.minutes:g} --digits-minutes {args.digits_minutes:g}")
    results = {"date": started, "load_avg_at_start": load_avg, "load_avg_at_end": list(os.getloadavg()),
               "command": f"python bench/pixelcnn_stylegan.py {args.part} {flags}", "threads": 1, "rows": rows}
    dest = RESULTS / ("pixelcnn_mnist.json" if args.part == "pixelcnn" else "stylegan_vs_dcgan.json")
    if args.part == "stylegan" and args.only and dest.is_file():  # the other data set's rows stay as measured
        kept = json.loads(dest.read_text())
        kept_rows = {k: {"date": kept.get("date"), "load_avg_at_start": kept.get("load_avg_at_start"), **v}
                     for k, v in kept["rows"].items() if not k.endswith(args.only)}
        results["rows"] = {**kept_rows, **rows}
        results["command"] += f" (--only {args.only}; each row has its own date)"
    dest.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
