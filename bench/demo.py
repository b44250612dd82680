"""The first impression, measured: `genlab demo` end to end on this machine, and the README's pictures.

    python bench/demo.py [--seconds S]

Runs the whole demo as `genlab demo` does (text, image, music; with --seconds, each part bounded to S seconds
of wall time; threads auto) into a fresh folder,
writes the README's pictures into docs/img (what `genlab demo --pictures docs/img` does), and records the
wall time and each part's figures: the text part's val bits per char before and after beside the unigram
entropy of its val split (target: at least 30 % below it), FID (genlab features) before and after for the
digits, the music val loss. Writes bench/results/demo.json. Target: the whole demo under 5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "demo.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=None)
    p.add_argument("--out", default="/tmp/genlab-bench-demo")
    args = p.parse_args()
    from genlab.workflows.demo import PARTS, run_demo
    from genlab.core.threads import use

    threads = use("auto", "--threads")
    load_avg = list(os.getloadavg())
    shutil.rmtree(args.out, ignore_errors=True)
    started = time.perf_counter()
    run_demo(Path(args.out), list(PARTS), args.seconds, progress=False, pictures=ROOT / "docs" / "img")
    wall = time.perf_counter() - started
    summary = json.loads((Path(args.out) / "summary.json").read_text())
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_avg_at_start": load_avg,
               "command": "python bench/demo.py" + (f" --seconds {args.seconds:g}" if args.seconds else ""), "threads": threads,
               "wall_seconds": round(wall, 1), **summary}
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
