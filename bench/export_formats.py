"""Three runs in every form they export to, measured side by side: size, speed, quality.

    python bench/export_formats.py [--data ../shared/data/tinyshakespeare.txt] [--seconds 120]

Trains recipes/tinyshakespeare-gpt.toml, recipes/tinyshakespeare-lstm.toml and a digits DDPM for --seconds
each, exports each with `genlab export --format onnx`, `--format int8` (onnxruntime) and `--format int8
--backend torch` (sequence runs), loads every folder back with genlab.load, and measures in one process,
one torch/onnxruntime thread, the forms timed in turn over 3 interleaved rounds (best of 3 each): file
size; for text, tokens/s decoding 128 new tokens at batch 1 and 8 through genlab's step engine and val loss over the whole val split; for the DDPM, images/s at batch 1 and 8
(DDIM, 10 steps) and FID on genlab's features (1,000 images against the digits). Writes
bench/results/export_formats.json. Targets (issue "Ship a model"): text int8 at most 30 % of the fp32
size, faster at batch 1, within 0.02 nats; ONNX fp32 at least as fast as PyTorch at batch 1.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "export_formats.json"
NEW_TOKENS = 128
DDIM_STEPS = 10
FID_IMAGES = 1000


ROUNDS = 3  # every form timed once per round, rounds interleaved: a noisy minute hurts all forms alike


def decode_seconds(model, prompt: list[int], batch: int) -> float:
    from genlab.core.generators import UNFILTERED, SamplingParams
    from genlab.sampling.engine import Engine, Request, decode

    engine = Engine(model)
    start = time.perf_counter()
    decode(engine, [Request(prompt, SamplingParams(max_new_tokens=NEW_TOKENS, **UNFILTERED), seed=i) for i in range(batch)])
    return time.perf_counter() - start


def image_seconds(gen, batch: int) -> float:
    start = time.perf_counter()
    gen.generate_array(batch, seed=0, steps=DDIM_STEPS, sampler="ddim")
    return time.perf_counter() - start


def interleaved_rates(timers: dict, items: dict) -> dict:
    """{form: {batch: items per second}}, best of ROUNDS, forms timed in turn within each round."""
    best = {(form, batch): float("inf") for form in timers for batch in items}
    for _ in range(ROUNDS):
        for form, timer in timers.items():
            for batch in items:
                best[form, batch] = min(best[form, batch], timer(batch))
    return {form: {batch: items[batch] / best[form, batch] for batch in items} for form in timers}


def weights_file(folder: Path) -> Path:
    return next(p for p in (folder / "model.onnx", folder / "model_int8.safetensors", folder / "model.safetensors") if p.is_file())


def forms(run: Path, out: Path, sequence: bool) -> dict[str, Path]:
    from genlab.export import export

    folders = {"pytorch fp32": run}
    targets = [("pytorch int8", "int8", "torch")] if sequence else []
    targets += [("onnx fp32", "onnx", "onnx"), ("onnx int8", "int8", "onnx")]
    for name, fmt, backend in targets:
        folder = out / name.replace(" ", "-")
        export(run, fmt, folder, progress=False, backend=backend)
        folders[name] = folder
    return folders


def text_rows(recipe: str, args, out: Path) -> tuple[str, list[dict]]:
    import genlab
    from genlab.core.config import build_config
    from genlab.datasets.token_store import TokenStore
    from genlab.tasks.sequence import evaluate_tokens

    config = build_config(ROOT / "recipes" / recipe, {"data": args.data, "out": str(out / "run")},
                          [f"train.max_time={args.seconds}", "train.progress=false"])
    run = genlab.train(config, progress=False, overwrite=True)
    val = TokenStore(run.path / "data").split("val")
    folders = forms(run.path, out, sequence=True)
    gens = {name: genlab.load(folder, device="cpu") for name, folder in folders.items()}
    prompt = gens["pytorch fp32"].encode_prompt("ROMEO:")
    rates = interleaved_rates({name: (lambda b, m=gen.model: decode_seconds(m, prompt, b)) for name, gen in gens.items()},
                              {1: NEW_TOKENS, 8: 8 * NEW_TOKENS})
    rows = []
    for name, gen in gens.items():
        loss = evaluate_tokens(gen.model, val, gen.tokenizer.unit_lengths(), getattr(config.model, "block_size", 128), "cpu")["loss"]
        row = {"form": name, "bytes": weights_file(folders[name]).stat().st_size, "val_loss": loss,
               "batch1_per_s": rates[name][1], "batch8_per_s": rates[name][8]}
        print(recipe, row, flush=True)
        rows.append(row)
    return f"recipes/{recipe} trained {run.results['step']} steps ({args.seconds:g} s)", rows


def image_rows(args, out: Path) -> tuple[str, list[dict]]:
    import genlab

    config = {"task": "image", "out": str(out / "run"), "data": {"source": "digits"}, "model": {"name": "ddpm"},
              "train": {"max_time": args.seconds, "progress": False}}
    run = genlab.train(config, progress=False, overwrite=True)
    reference = genlab.load(run.path, device="cpu")
    folders = forms(run.path, out, sequence=False)
    gens = {name: genlab.load(folder, device="cpu") for name, folder in folders.items()}
    rates = interleaved_rates({name: (lambda b, g=gen: image_seconds(g, b)) for name, gen in gens.items()}, {1: 1, 8: 8})
    rows = []
    for name, gen in gens.items():
        gen.store = reference.store  # an export keeps the data's shape, not its images: FID reads the run's
        fid = gen.evaluate(n=FID_IMAGES, steps=DDIM_STEPS, sampler="ddim", progress=False)["fid"]
        row = {"form": name, "bytes": weights_file(folders[name]).stat().st_size, "fid_genlab_features": fid,
               "batch1_per_s": rates[name][1], "batch8_per_s": rates[name][8]}
        print("ddpm", row, flush=True)
        rows.append(row)
    return f"digits DDPM (defaults) trained {run.results['step']} steps ({args.seconds:g} s)", rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"))
    p.add_argument("--seconds", type=float, default=120.0)
    p.add_argument("--out", default="/tmp/genlab-bench-export")
    args = p.parse_args()
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    load_avg = list(os.getloadavg())
    out = Path(args.out)
    models = []
    for recipe in ("tinyshakespeare-gpt.toml", "tinyshakespeare-lstm.toml"):
        described, rows = text_rows(recipe, args, out / recipe.split(".")[0])
        models.append({"model": described, "unit": "tokens", "rows": rows})
    described, rows = image_rows(args, out / "ddpm")
    models.append({"model": described, "unit": "images", "rows": rows})
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_avg_at_start": load_avg,
               "load_avg_at_end": list(os.getloadavg()), "command": f"python bench/export_formats.py --seconds {args.seconds:g}",
               "threads": 1, "rounds": ROUNDS, "new_tokens": NEW_TOKENS, "ddim_steps": DDIM_STEPS, "fid_images": FID_IMAGES, "models": models}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
