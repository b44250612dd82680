"""Distillation on Tiny Shakespeare: a teacher, then one small student several ways, for the same steps.

    python bench/distill.py [--data ../shared/data/tinyshakespeare.txt] [--teacher-minutes 20] [--student-steps 1500]
                            [--student gpt|lstm] [--teacher RUN] [--teacher-recipe RECIPE] [--c2st N]
                            [--critic-weights 0.1]

The teacher is the tinyshakespeare GPT recipe (4x128, ~0.8M parameters) trained for --teacher-minutes (or a
finished teacher run, --teacher); the student (about 1/8 of the teacher's parameters: a 2x64 GPT, or a 1x108
LSTM, a different family reading the same characters) is trained for --student-steps from scratch, distilled
(alpha 0.5, T 2), distilled with the critic (adv weight 0.1) and, for the LSTM, distilled from the teacher's
soft targets alone (alpha 0, T 1), all on the tail split with one thread. Each run
is measured the same way (genlab.workflows.compare.measure: val loss and bits per char over the whole val split) plus
distinct-2 of 8 samples and sampling tokens/s at batch 1, the best of 5 draws of 200 tokens (one draw is at the
mercy of the machine's noise). Writes bench/results/distill.json (GPT student) or distill_lstm.json.

With --c2st N (issue 36's measure of what a critic buys), the teacher is --teacher-recipe (a recipe under
recipes/, e.g. budgets/tinyshakespeare-lstm-20min.toml), the variants are scratch, distilled (alpha 0.5, T 2),
distilled from the soft targets alone (alpha 0, T 1) and that with the critic at each --critic-weights, and
every run also gets a classifier two-sample test of N held-out windows continued at temperature 1 (accuracy
0.5: indistinguishable from the real text), with the generated side's distinct-2 and repetition rate. Writes
bench/results/distill_c2st.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUDENTS = {"gpt": ["model.n_layer=2", "model.n_head=2", "model.n_embd=64"],
            "lstm": ["model.n_layer=1", "model.n_embd=108"]}
STUDENT_RECIPE = {"gpt": "tinyshakespeare-gpt.toml", "lstm": "tinyshakespeare-lstm.toml"}  # the family's own recipe



def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"))
    p.add_argument("--teacher-minutes", type=float, default=20.0)
    p.add_argument("--student-steps", type=int, default=1500)
    p.add_argument("--student", choices=sorted(STUDENTS), default="gpt")
    p.add_argument("--teacher", default=None, help="a finished teacher run to reuse instead of training one")
    p.add_argument("--out", default="/tmp/genlab-bench-distill")
    p.add_argument("--teacher-recipe", default="tinyshakespeare-gpt.toml", help="the teacher's recipe, under recipes/")
    p.add_argument("--c2st", type=int, default=0, help="texts in a two-sample test of every run (0: none)")
    p.add_argument("--critic-weights", default="0.1", help="with --c2st: the critic's weights to try, comma-separated")
    p.add_argument("--reuse", action="store_true",
                   help="resume the student runs already in --out (a finished one is measured, not retrained)")
    args = p.parse_args()
    import torch

    import genlab
    from genlab.workflows.compare import measure
    from genlab.core.config import build_config

    torch.set_num_threads(1)
    load_avg = list(os.getloadavg())
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out = Path(args.out)
    recipe = ROOT / "recipes" / args.teacher_recipe
    common = ["data.split=tail", "train.progress=false", "train.threads=1"]
    teacher_path = Path(args.teacher) if args.teacher else out / "teacher"
    if not args.teacher:
        teacher = build_config(recipe, {"data": args.data, "out": str(teacher_path)},
                               [*common, f"train.max_time={args.teacher_minutes * 60}"])
        genlab.train(teacher, progress=False, overwrite=True)
    student_sets = [*common, *STUDENTS[args.student], f"train.max_steps={args.student_steps}", "train.max_time=100000"]
    runs = {"teacher": teacher_path}
    teacher_only = {"teacher": str(teacher_path), "alpha": 0.0, "temperature": 1.0}  # the pure soft-target loss
    variants = [("scratch", "scratch", {}), ("distilled", "distilled", {"teacher": str(teacher_path)}),
                ("distilled + critic", "distilled-critic", {"teacher": str(teacher_path), "adv_weight": 0.1})]
    if args.student != "gpt" or args.c2st:
        variants.append(("distilled, alpha 0, T 1", "kd-a0-t1", teacher_only))
    if args.c2st:  # the critic on top of the soft targets alone, at each weight
        variants = [v for v in variants if v[0] != "distilled + critic"]
        variants += [(f"distilled, alpha 0, T 1 + critic {w:g}", f"kd-a0-t1-critic{w:g}", {**teacher_only, "adv_weight": w})
                     for w in map(float, args.critic_weights.split(","))]
    for name, folder, distill in variants:
        folder = f"{args.student}-{folder}" if args.student != "gpt" else folder
        cfg = build_config(ROOT / "recipes" / STUDENT_RECIPE[args.student], {"data": args.data, "out": str(out / folder)},
                           student_sets, base={"distill": distill} if distill else None)
        genlab.train(cfg, progress=False, overwrite=not args.reuse)
        runs[name] = Path(cfg.out)
    rows = []
    for name, path in runs.items():
        row = measure(path, draws=5)
        gen = genlab.load(path)
        row["distinct_2"] = gen.evaluate(samples=8, sample_tokens=200, progress=False)["distinct_2"]
        keep = ["params", "val_loss", "val_bits_per_unit", "sample_tokens_per_s", "train_tokens_per_s", "wall_s", "distinct_2"]
        if args.c2st:
            from genlab.datasets.token_store import TokenStore

            row |= gen.two_sample(TokenStore(gen.run.data).split("val"), args.c2st, temperature=1.0)
            keep += ["c2st_accuracy", "c2st_interval", "c2st_texts", "generated_distinct_2", "generated_repetition",
                     "real_distinct_2", "real_repetition"]
        rows.append({"run": name, **{k: row[k] for k in keep}})
        print(rows[-1], flush=True)
    results = {"date": started, "load_avg_at_start": load_avg, "load_avg_at_end": list(os.getloadavg()),
               "command": f"python bench/distill.py --teacher-minutes {args.teacher_minutes:g} --student-steps {args.student_steps}"
                          + (f" --student {args.student}" if args.student != "gpt" else "")
                          + (f" --teacher-recipe {args.teacher_recipe}" if args.teacher_recipe != "tinyshakespeare-gpt.toml" else "")
                          + (f" --c2st {args.c2st} --critic-weights {args.critic_weights}" if args.c2st else "")
                          + (f" --teacher {args.teacher}" if args.teacher else "") + (" --reuse" if args.reuse else ""),
               "threads": 1, "student": STUDENTS[args.student], "student_family": args.student,
               "teacher_recipe": args.teacher_recipe, "rows": rows}
    name = "distill_c2st.json" if args.c2st else "distill.json" if args.student == "gpt" else f"distill_{args.student}.json"
    written = ROOT / "bench" / "results" / name
    written.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {written}")


if __name__ == "__main__":
    main()
