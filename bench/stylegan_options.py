"""What StyleGAN's optional regularizers buy at small scale: each variant for the same minutes on `digits`.

    python bench/stylegan_options.py [--minutes 5] [--variants base,augment,translation,path_length]

base: the family's defaults. augment: DiffAugment (`model.augment = "color,translation,cutout"`). translation:
DiffAugment's translation alone. path_length: lazy path-length regularization (`model.pl_weight = 2`, every 4
steps). One thread each, one run after another; FID (genlab's classifier features, 2,000 generated images),
precision and recall of the kept (EMA) weights. Writes bench/results/stylegan_options.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from pixelcnn_stylegan import train_image

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "stylegan_options.json"
VARIANTS = {"base": {}, "augment": {"augment": "color,translation,cutout"}, "translation": {"augment": "translation"},
            "path_length": {"pl_weight": 2.0}}


def main() -> None:
    import genlab

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--variants", default=",".join(VARIANTS))
    args = p.parse_args()
    results = {"command": f"python bench/stylegan_options.py --minutes {args.minutes:g} --variants {args.variants}",
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_avg_at_start": list(os.getloadavg()),
               "minutes": args.minutes, "data": "digits", "rows": []}
    for name in args.variants.split(","):
        load_avg, started = list(os.getloadavg()), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        run = train_image({"name": "stylegan", **VARIANTS[name]}, "digits", args.minutes, f"/tmp/genlab-bench-stylegan-{name}")
        r = genlab.load(run.path).evaluate(n=2000, progress=False)
        row = {"variant": name, "model": VARIANTS[name], "steps": run.results["step"], "fid": r["fid"],
               "precision": r["precision"], "recall": r["recall"], "date": started, "load_avg_at_start": load_avg}
        print(json.dumps(row), flush=True)
        results["rows"].append(row)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
