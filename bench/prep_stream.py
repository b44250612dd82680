"""Speed and bounded memory of `genlab data prepare`'s engines on CSV and JSONL files larger than they should hold.

Generates files of the given sizes in a temp folder (synthetic reviews: 5-40
words of text, a skewed 5-way label, an int feature with 5% missing, a float
feature; about 1% exact duplicate rows and 2% empty texts), runs the issue's
full command on each with each engine in a fresh process, and records that
process's peak RSS (ru_maxrss), its RSS after the imports, wall time and rows
per second. Engines other than polars (the default) run only on files up to
--compare-max-gb, side by side with polars there (pandas takes ten minutes a
2 GB file); BASELINE holds the pandas-only pipeline's figures that issue 37
measures the engines against.

    python bench/prep_stream.py                       # 0.2 GB and 2 GB, CSV and JSONL
    python bench/prep_stream.py --sizes-gb 0.05 --formats csv   # a quick look

Writes bench/results/prep_stream.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "prep_stream.json"
# The pipeline before the Polars engine (pandas only; commit 681c52f, stored 2026-11-23, this machine): the
# 2 GB figures issue 37 sets its 10x target against.
BASELINE = {"csv": {"rows_per_second": 24649, "peak_rss_mib": 954}, "jsonl": {"rows_per_second": 14664, "peak_rss_mib": 796}}
LABELS = np.array(["books", "music", "film", "games", "garden"])
LABEL_SHARES = np.array([0.4, 0.25, 0.15, 0.12, 0.08])
OPTIONS = dict(
    text_col="text", label_col="label", dedupe=True, dropna="text", clean="strip-punct,collapse-space",
    split="70/15/15", stratify="label", seed=42, normalize="feature1,feature2", augment="eda", format="parquet",
)
COMMAND = ("genlab data prepare FILE --text-col text --label-col label --dedupe --dropna text "
           "--clean strip-punct,collapse-space --split 70/15/15 --stratify label --seed 42 "
           "--normalize feature1,feature2 --augment eda --out OUT --format parquet --engine ENGINE")

# Runs in a fresh interpreter so that ru_maxrss is this one run's peak.
CHILD = """
import json, resource, sys, time
from genlab.prep import prepare
def rss_mib(): return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) / 1024
after_imports = rss_mib()
start = time.perf_counter()
record = prepare(sys.argv[1], sys.argv[2], progress=False, **json.loads(sys.argv[3]))
assert record["steps"][0]["params"]["engine"] == json.loads(sys.argv[3])["engine"], "the engine asked for did not run"
print(json.dumps({"seconds": time.perf_counter() - start, "rss_after_imports_mib": after_imports,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rows_read": record["input"]["records"], "splits": record["splits"]}))
"""


def generate(path: Path, fmt: str, target_bytes: int, seed: int = 0) -> int:
    """Write synthetic rows until the file reaches `target_bytes`; -> rows written."""
    rng = np.random.default_rng(seed)
    vocabulary = np.array([f"w{i}" for i in range(5000)] + ["great", "bad", "Fine!", "okay,", "meh."])
    rows, previous = 0, []
    with open(path, "w", encoding="utf-8") as f:
        if fmt == "csv":
            f.write("text,label,feature1,feature2\n")
        while f.tell() < target_bytes:
            n = 50_000
            lengths = rng.integers(5, 41, n)
            words = vocabulary[rng.integers(0, len(vocabulary), lengths.sum())]
            cuts = np.cumsum(lengths)[:-1]
            texts = [" ".join(w) for w in np.split(words, cuts)]
            texts = ["" if e else t for t, e in zip(texts, rng.random(n) < 0.02)]
            labels = rng.choice(LABELS, n, p=LABEL_SHARES)
            feature1 = rng.integers(0, 1000, n)
            missing1 = rng.random(n) < 0.05
            feature2 = rng.normal(50, 10, n).round(4)
            lines = []
            for t, lab, f1, m1, f2 in zip(texts, labels, feature1, missing1, feature2):
                if fmt == "csv":
                    lines.append(f'"{t.replace(chr(34), chr(34) * 2)}",{lab},{"" if m1 else f1},{f2}\n')
                else:
                    lines.append(json.dumps({"text": t, "label": str(lab), "feature1": None if m1 else int(f1),
                                             "feature2": float(f2)}) + "\n")
            duplicates = [previous[i] for i in rng.integers(0, len(previous), n // 100)] if previous else []
            f.writelines(lines + duplicates)
            previous = lines[:1000]
            rows += len(lines) + len(duplicates)
    return rows


def measure(path: Path, out: Path, engine: str) -> dict:
    completed = subprocess.run([sys.executable, "-c", CHILD, str(path), str(out), json.dumps({**OPTIONS, "engine": engine})],
                               capture_output=True, text=True, check=True)
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["rows_per_second"] = result["rows_read"] / result["seconds"]
    return result


def main() -> None:
    load_at_start = list(os.getloadavg())  # stated beside the figures: a busy machine understates them
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-gb", type=float, nargs="+", default=[0.2, 2.0])
    parser.add_argument("--formats", nargs="+", default=["csv", "jsonl"], choices=["csv", "jsonl"])
    parser.add_argument("--tmp", type=Path, default=None, help="Where to put the generated files (default: system temp).")
    parser.add_argument("--engines", nargs="+", default=["polars", "pandas", "dask"], choices=["polars", "pandas", "dask"])
    parser.add_argument("--compare-max-gb", type=float, default=0.25, help="Run engines other than polars only on files this small.")
    args = parser.parse_args()

    runs = []
    folder = Path(tempfile.mkdtemp(prefix="genlab-prep-bench-", dir=args.tmp))
    try:
        for fmt in args.formats:
            for size in args.sizes_gb:
                path = folder / f"input-{size:g}gb.{fmt}"
                started = time.perf_counter()
                rows = generate(path, fmt, int(size * 1e9))
                print(f"generated {path.name}: {path.stat().st_size / 1e9:.2f} GB, {rows} rows "
                      f"in {time.perf_counter() - started:.0f} s", flush=True)
                for engine in args.engines:
                    if engine != "polars" and size > args.compare_max_gb:
                        continue
                    out = folder / f"out-{fmt}-{size:g}-{engine}"
                    result = measure(path, out, engine)
                    result.update(format=fmt, engine=engine, file_bytes=path.stat().st_size,
                                  file_gb=round(path.stat().st_size / 1e9, 3), load_avg=list(os.getloadavg()))
                    result["peak_rss_over_file_size"] = result["peak_rss_mib"] * 2**20 / result["file_bytes"]
                    print(json.dumps(result), flush=True)
                    runs.append(result)
                    shutil.rmtree(out)
                path.unlink()
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpu_cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    RESULTS.write_text(json.dumps({"command": COMMAND, "options": OPTIONS, "machine": machine, "runs": runs, "baseline": BASELINE,
                                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_avg_at_start": load_at_start},
                                  indent=2, sort_keys=True) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
