"""Image and text on MNIST: a clip run's zero-shot accuracy and recall, and text-to-image judged by a classifier.

    python bench/multimodal.py [--clip-minutes 5] [--diffusion-minutes 10] [--n 300] [--size 16] [--threads 2]
                               [--clip RUN]

On the 10,000 MNIST images of ../shared/data/mnist (captions made from the labels with genlab's templates; 10 %
held out): a clip run for --clip-minutes, then `genlab eval` on its val split (zero-shot accuracy, image->text
and text->image recall@1/5, counting a retrieved item of the right class). Then a text-conditioned DDPM on the
same images for --diffusion-minutes, and at guidance 1, 3 and 5: --n images drawn for the class prompts in turn
("a handwritten seven"), the share an independent classifier (genlab's feature CNN, trained by this bench on the
run's training split) assigns to the prompted class, and FID (genlab features) of those images. --size resizes
the images of the diffusion run (and so of its classifier and FID); --clip reuses a finished clip run instead of
training one (its evaluation is measured again).
Writes bench/results/multimodal.json and the pictures of docs/multimodal.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "multimodal.json"
MNIST = ROOT.parent / "shared" / "data" / "mnist"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(MNIST), help="the MNIST IDX folder")
    p.add_argument("--clip-minutes", type=float, default=5.0)
    p.add_argument("--diffusion-minutes", type=float, default=10.0)
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--size", type=int, default=None, help="diffusion images resized to size x size (default: MNIST's 28)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clip", default=None, help="a finished clip run to reuse")
    p.add_argument("--out", default="/tmp/genlab-bench-multimodal")
    args = p.parse_args()
    import numpy as np
    import torch

    import genlab
    from genlab.core.config import validate_config
    from genlab.media.grids import make_grid, save_png
    from genlab.metrics.image import _as_input, train_feature_cnn

    torch.set_num_threads(args.threads)
    load_avg = list(os.getloadavg())
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    common = {"max_steps": 10_000_000, "progress": False, "threads": args.threads, "eval_interval": 500,
              "checkpoint_interval": 500}
    clip = Path(args.clip) if args.clip else genlab.train(validate_config({
        "task": "clip", "out": f"{args.out}/clip", "data": {"source": args.data},
        "train": {**common, "max_time": args.clip_minutes * 60, "batch_size": 128, "lr": 2e-3}}), progress=False, overwrite=True).path
    clip_gen = genlab.load(clip)
    clip_eval = clip_gen.evaluate(progress=False)
    hits, _, _ = clip_gen.search("a handwritten seven", None, 16)
    save_png(make_grid(hits, 8), ROOT / "docs" / "img" / "clip_search_seven.png")

    t2i = genlab.train(validate_config({
        "task": "image", "out": f"{args.out}/t2i", "data": {"source": args.data, "image": {"size": args.size}},
        "model": {"name": "ddpm", "condition": "text", "text_encoder": str(clip)},
        "train": {**common, "max_time": args.diffusion_minutes * 60}}), progress=False, overwrite=True).path
    gen = genlab.load(t2i)
    store = gen.store
    train_rows = store.indices("train")
    classifier, accuracy = train_feature_cnn(np.asarray(store.images)[train_rows], np.asarray(store.labels)[train_rows],
                                             len(store.classes), torch.device("cpu"), progress=False)
    rows = []
    for guidance in (1.0, 3.0, 5.0):
        t0 = time.perf_counter()
        images = gen.generate_array(args.n, seed=0, guidance=guidance, steps=25)
        seconds = time.perf_counter() - t0
        wanted = np.arange(args.n) % len(store.classes)  # the default prompts go through the classes in turn
        with torch.no_grad():
            predicted = torch.cat([classifier(_as_input(images[i: i + 256])).argmax(1) for i in range(0, args.n, 256)]).numpy()
        fid = gen.evaluate(n=args.n, guidance=guidance, steps=25, progress=False)["fid"]
        rows.append({"guidance": guidance, "prompted_class_accuracy": float((predicted == wanted).mean()), "fid": fid,
                     "images_per_s": round(args.n / seconds, 1)})
        print(rows[-1], flush=True)
        if guidance == 3.0:
            grid = gen.generate_array(80, seed=1, guidance=guidance, steps=25)
            save_png(make_grid(grid, 10), ROOT / "docs" / "img" / "text_to_image_mnist.png")
    results = {"date": started, "load_avg_at_start": load_avg, "load_avg_at_end": list(os.getloadavg()),
               "command": f"python bench/multimodal.py --clip-minutes {args.clip_minutes:g} --diffusion-minutes "
                          f"{args.diffusion_minutes:g} --n {args.n} --threads {args.threads}"
                          + (f" --size {args.size}" if args.size else "") + (f" --clip {args.clip}" if args.clip else ""),
               "image_size": args.size or 28, "threads": args.threads, "clip_reused": bool(args.clip),
               "diffusion_steps": int(json.loads((t2i / "metrics.jsonl").read_text().splitlines()[-1]).get("step", 0)),
               "clip": {k: clip_eval[k] for k in clip_eval if k != "data"}, "classifier_held_out_accuracy": accuracy,
               "text_to_image": rows}
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
