"""Sandbox throughput: how many candidates per second genlab.metrics.sandbox executes, and what each costs.

A trivial passing HumanEval-style program (a one-line function and its
check) is run, side by side in one process:
  - in-process `exec` (the work itself, no isolation),
  - a bare `python -I -B program.py` subprocess (interpreter start, no guard),
  - the sandbox one at a time (workers=1): the per-candidate cost,
  - the sandbox with 2 workers: candidates per second on 2 cores.
Overhead per candidate = sandbox (workers=1) seconds - in-process seconds.

    python bench/code_sandbox.py                # 200 candidates
    python bench/code_sandbox.py --candidates 50

Writes bench/results/code_sandbox.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from genlab.metrics.code import Problem, program_of
from genlab.core.files import atomic_write_json
from genlab.metrics.sandbox import Limits, isolation, run_many, run_python

RESULTS = Path(__file__).parent / "results" / "code_sandbox.json"
PROBLEM = Problem("Bench/0", 'def one():\n    """Return 1."""\n', "one", "def check(candidate):\n    assert candidate() == 1\n",
                  "    return 1\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=200)
    args = parser.parse_args()
    n = args.candidates
    load_at_start = list(os.getloadavg())
    program = program_of(PROBLEM, PROBLEM.canonical_solution)
    limits = Limits()

    t0 = time.perf_counter()
    for _ in range(n):
        exec(compile(program, "program.py", "exec"), {"__name__": "__main__"})
    in_process = (time.perf_counter() - t0) / n

    bare = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "program.py"
        path.write_text(program)
        for _ in range(min(n, 100)):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-I", "-B", str(path)], check=True, cwd=tmp)
            bare.append(time.perf_counter() - t)

    sequential = []
    for _ in range(min(n, 100)):
        t = time.perf_counter()
        assert run_python(program, limits).passed
        sequential.append(time.perf_counter() - t)

    t = time.perf_counter()
    outcomes = run_many([program] * n, limits, workers=2)
    parallel_s = time.perf_counter() - t
    assert all(o.passed for o in outcomes)

    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_avg_at_start": load_at_start,
        "candidates": n,
        "isolation": isolation(),
        "in_process_ms": in_process * 1e3,
        "bare_subprocess_ms_median": statistics.median(bare) * 1e3,
        "sandbox_ms_median_workers_1": statistics.median(sequential) * 1e3,
        "overhead_ms_per_candidate": (statistics.median(sequential) - in_process) * 1e3,
        "guard_ms_per_candidate": (statistics.median(sequential) - statistics.median(bare)) * 1e3,
        "candidates_per_s_workers_1": 1 / statistics.mean(sequential),
        "candidates_per_s_workers_2": n / parallel_s,
    }
    for key, value in results.items():
        print(f"{key:34} {value:.2f}" if isinstance(value, float) else f"{key:34} {value}")
    atomic_write_json(RESULTS, results)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
