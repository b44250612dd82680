"""Distillation on Tiny Shakespeare: a teacher, then one small student three ways, for the same steps.

    python bench/distill.py [--data ../shared/data/tinyshakespeare.txt] [--teacher-minutes 20] [--student-steps 1500]

The teacher is the tinyshakespeare GPT recipe (4x128, ~0.8M parameters) trained for --teacher-minutes; the
student a 2x64 GPT (about 1/8 of the teacher's parameters), trained for --student-steps from scratch, distilled
(alpha 0.5, T 2) and distilled with the critic (adv weight 0.1), all on the tail split with one thread. Each run
is measured the same way (genlab.compare.measure: val loss and bits per char over the whole val split, sampling
tokens/s at batch 1) plus distinct-2 of 8 samples. Writes bench/results/distill.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "distill.json"
STUDENT = ["model.n_layer=2", "model.n_head=2", "model.n_embd=64"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"))
    p.add_argument("--teacher-minutes", type=float, default=20.0)
    p.add_argument("--student-steps", type=int, default=1500)
    p.add_argument("--out", default="/tmp/genlab-bench-distill")
    args = p.parse_args()
    import torch

    import genlab
    from genlab.compare import measure
    from genlab.config import build_config

    torch.set_num_threads(1)
    load_avg = list(os.getloadavg())
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out = Path(args.out)
    recipe = ROOT / "recipes" / "tinyshakespeare-gpt.toml"
    common = ["data.split=tail", "train.progress=false", "train.threads=1"]
    teacher = build_config(recipe, {"data": args.data, "out": str(out / "teacher")},
                           [*common, f"train.max_time={args.teacher_minutes * 60}"])
    genlab.train(teacher, progress=False, overwrite=True)
    student_sets = [*common, *STUDENT, f"train.max_steps={args.student_steps}", "train.max_time=100000"]
    runs = {"teacher": out / "teacher"}
    for name, distill in (("scratch", {}), ("distilled", {"teacher": str(out / "teacher")}),
                          ("distilled + critic", {"teacher": str(out / "teacher"), "adv_weight": 0.1})):
        cfg = build_config(recipe, {"data": args.data, "out": str(out / name.replace(" + ", "-"))}, student_sets,
                           base={"distill": distill} if distill else None)
        genlab.train(cfg, progress=False, overwrite=True)
        runs[name] = Path(cfg.out)
    rows = []
    for name, path in runs.items():
        row = measure(path)
        gen = genlab.load(path)
        row["distinct_2"] = gen.evaluate(samples=8, sample_tokens=200, progress=False)["distinct_2"]
        rows.append({"run": name, **{k: row[k] for k in ("params", "val_loss", "val_bits_per_unit", "sample_tokens_per_s",
                                                          "train_tokens_per_s", "wall_s", "distinct_2")}})
        print(rows[-1], flush=True)
    results = {"date": started, "load_avg_at_start": load_avg, "load_avg_at_end": list(os.getloadavg()),
               "command": f"python bench/distill.py --teacher-minutes {args.teacher_minutes:g} --student-steps {args.student_steps}",
               "threads": 1, "rows": rows}
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
