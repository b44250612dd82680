"""Code metrics: syntax-valid rate, and functional correctness as pass@k on HumanEval-format problems.

    read_problems(path) -> [Problem]             HumanEval JSONL (optionally .gz)
    program_of(problem, completion) -> str       prompt + completion + test + check(entry_point)
    pass_at_k(n, c, k) -> float                  unbiased estimator of Chen et al. 2021
    evaluate_code(problems, completions, ...)    every candidate through genlab.metrics.sandbox -> per task + summary
"""

from __future__ import annotations

import ast
import gzip
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write_json, atomic_write_text
from genlab.core.folders import claim
from genlab.core.progress import progress_bar
from genlab.metrics.sandbox import Limits, isolation, run_many

PROBLEM_FIELDS = ("task_id", "prompt", "entry_point", "test", "canonical_solution")


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str  # signature and docstring the model completes
    entry_point: str  # the function `test`'s check(candidate) receives
    test: str  # defines check(candidate), which raises when the candidate is wrong
    canonical_solution: str  # a correct body, used by the self-check


def read_problems(path: Path | str) -> list[Problem]:
    """Problems from a HumanEval-format JSONL file (`.gz` read as gzip); errors name the line and field."""
    path = Path(path)
    if not path.is_file():
        raise GenlabError(f"{path}: no such problems file")
    opener = gzip.open if path.suffix == ".gz" else open
    problems, seen = [], set()
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise GenlabError(f"{path}:{number}: not valid JSON ({e.msg})") from None
                except RecursionError:  # json's parser recurses: arrays nested thousands deep
                    raise GenlabError(f"{path}:{number}: JSON nested too deeply") from None
                if not isinstance(row, dict):
                    raise GenlabError(f"{path}:{number}: expected a JSON object")
                for field in PROBLEM_FIELDS:
                    if not isinstance(row.get(field), str):
                        what = "missing" if field not in row else "not a string"
                        raise GenlabError(f"{path}:{number}: field `{field}` is {what}")
                if row["task_id"] in seen:
                    raise GenlabError(f"{path}:{number}: task_id {row['task_id']!r} appears twice")
                seen.add(row["task_id"])
                problems.append(Problem(**{k: row[k] for k in PROBLEM_FIELDS}))
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise GenlabError(f"{path}: cannot read ({e})") from None
    if not problems:
        raise GenlabError(f"{path}: no problems in the file")
    return problems


def program_of(problem: Problem, completion: str) -> str:
    """The program that passes (exits 0) exactly when `completion` solves `problem`."""
    return f"{problem.prompt}{completion}\n\n{problem.test}\n\ncheck({problem.entry_point})\n"


def is_valid_python(source: str) -> bool:
    with warnings.catch_warnings():  # invalid escape sequences in model output are not our concern
        warnings.simplefilter("ignore")
        try:
            ast.parse(source)
        except (SyntaxError, ValueError):  # ValueError: NUL bytes
            return False
    return True


def syntax_valid_rate(sources: list[str]) -> float:
    """Share of `sources` that `ast.parse` accepts (0 for an empty list)."""
    return sum(is_valid_python(s) for s in sources) / len(sources) if sources else 0.0


def pass_at_k(n: int, c: int, k: int) -> float:
    """P(at least one of k draws without replacement from n samples, c of them correct, is correct).

    1 - C(n-c, k) / C(n, k), computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i), which
    never forms the huge binomials (Chen et al. 2021, "Evaluating Large Language
    Models Trained on Code", fig. 3).
    """
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"need 0 <= c <= n and k >= 1 (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def parse_ks(text: str) -> list[int]:
    """`1,10,100` -> [1, 10, 100]."""
    try:
        ks = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise GenlabError(f"--k {text!r}: expected comma-separated whole numbers such as 1,10") from None
    if not ks or ks[0] < 1 or ks[-1] > 10_000:
        raise GenlabError(f"--k {text!r}: every k must be between 1 and 10000")
    return ks


def evaluate_code(problems: list[Problem], completions: dict[str, list[str]], ks: list[int], limits: Limits = Limits(),
                  workers: int | None = None, progress: bool = True) -> tuple[list[dict], list[dict], dict]:
    """Run every completion of every problem in the sandbox.

    Returns (candidates, tasks, summary): one row per candidate (status, detail,
    seconds), one per task (n, correct, syntax-valid rate, pass@k for k <= n),
    and the means over tasks.
    """
    jobs = [(p, i, text) for p in problems for i, text in enumerate(completions[p.task_id])]
    outcomes = run_many([program_of(p, text) for p, _, text in jobs], limits, workers, progress, desc="executing")
    candidates = []
    for (p, i, text), o in zip(jobs, outcomes):
        candidates.append({"task_id": p.task_id, "sample": i, "completion": text, "passed": o.passed, "status": o.status,
                           "detail": o.detail, "syntax_valid": is_valid_python(p.prompt + text), "seconds": round(o.seconds, 4)})
    tasks = []
    for p in problems:
        rows = [r for r in candidates if r["task_id"] == p.task_id]
        n, c = len(rows), sum(r["passed"] for r in rows)
        statuses: dict[str, int] = {}
        for r in rows:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        tasks.append({"task_id": p.task_id, "n": n, "correct": c, "syntax_valid": sum(r["syntax_valid"] for r in rows) / n,
                      **{f"pass@{k}": pass_at_k(n, c, k) for k in ks if k <= n}, "statuses": statuses})
    summary = {"problems": len(problems), "candidates": len(candidates),
               "syntax_valid": sum(t["syntax_valid"] for t in tasks) / len(tasks)}
    for k in ks:
        if all(f"pass@{k}" in t for t in tasks):
            summary[f"pass@{k}"] = sum(t[f"pass@{k}"] for t in tasks) / len(tasks)
    summary["statuses"] = {s: sum(r["status"] == s for r in candidates) for s in sorted({r["status"] for r in candidates})}
    return candidates, tasks, summary


def eval_code(problems_path: Path | str, out: Path | str, generator=None, n: int = 1, ks: tuple[int, ...] = (1,),
              limits: Limits = Limits(), workers: int | None = None, seed: int = 0, progress: bool = True,
              **decoding) -> dict:
    """`genlab eval-code`: sample n completions per problem from `generator` (each problem's canonical
    solution when it is None, the harness self-check), run them all in the sandbox, and write
    OUT/completions.jsonl (one row per candidate), OUT/tasks.jsonl (one per task) and OUT/summary.json."""
    import time

    problems = read_problems(problems_path)
    claim(out, "eval-code", inputs=[problems_path])  # results of an earlier eval-code here are replaced
    start = time.perf_counter()
    if generator is None:
        completions = {p.task_id: [p.canonical_solution] * n for p in problems}
    else:
        completions = {}
        for i, p in enumerate(progress_bar(problems, desc="generating", unit="task", enabled=progress)):
            # Row j of problem i draws with seed + i*n + j: no two candidates share a seed.
            completions[p.task_id] = generator.complete_function(p.prompt, n=n, seed=seed + i * n, **decoding)
    generated = time.perf_counter()
    candidates, tasks, summary = evaluate_code(problems, completions, list(ks), limits, workers, progress)
    summary |= {
        "model": "canonical solutions" if generator is None else getattr(generator, "name", None) or str(generator.run.path),
        "problems_file": str(problems_path), "n": n, "seed": seed,
        "decoding": {k: v for k, v in decoding.items() if v is not None},
        "generation_seconds": round(generated - start, 2), "execution_seconds": round(time.perf_counter() - generated, 2),
        "limits": limits.__dict__, "isolation": isolation(),
    }
    out = Path(out)
    atomic_write_text(out / "completions.jsonl", "".join(json.dumps(r) + "\n" for r in candidates))
    atomic_write_text(out / "tasks.jsonl", "".join(json.dumps(r) + "\n" for r in tasks))
    atomic_write_json(out / "summary.json", summary)
    return summary
