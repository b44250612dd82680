"""eval-code: pass@k, the HumanEval reader, and the harness self-check (correct code passes, bad code fails)."""

import gzip
import itertools
import json
import math

import pytest

from genlab.core.errors import GenlabError
from genlab.metrics.code import evaluate_code, pass_at_k, read_problems, syntax_valid_rate
from genlab.metrics.sandbox import Limits

PROBLEMS = [
    {"task_id": "Toy/0", "entry_point": "add",
     "prompt": 'def add(a, b):\n    """Return the sum of a and b."""\n',
     "canonical_solution": "    return a + b\n",
     "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-4, 4) == 0\n"},
    {"task_id": "Toy/1", "entry_point": "is_palindrome",
     "prompt": 'def is_palindrome(text: str) -> bool:\n    """True when text reads the same backwards."""\n',
     "canonical_solution": "    return text == text[::-1]\n",
     "test": "def check(candidate):\n    assert candidate('abba')\n    assert not candidate('abc')\n    assert candidate('')\n"},
    {"task_id": "Toy/2", "entry_point": "count_words",
     "prompt": 'import collections\n\n\ndef count_words(text):\n    """Word -> how often it occurs."""\n',
     "canonical_solution": "    return dict(collections.Counter(text.split()))\n",
     "test": "def check(candidate):\n    assert candidate('a b a') == {'a': 2, 'b': 1}\n"},
]


def write_problems(path, rows=PROBLEMS):
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if str(path).endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def test_pass_at_k_matches_counting_every_subset():
    for n, c, k in [(5, 0, 1), (5, 2, 1), (5, 2, 2), (6, 3, 4), (4, 4, 2), (7, 1, 7)]:
        subsets = list(itertools.combinations([True] * c + [False] * (n - c), k))
        exact = sum(any(s) for s in subsets) / len(subsets)
        assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)
    assert pass_at_k(20, 3, 1) == pytest.approx(3 / 20)
    # Large n: the product form stays finite and agrees with exact binomials.
    assert pass_at_k(1000, 10, 100) == pytest.approx(1 - math.comb(990, 100) / math.comb(1000, 100), rel=1e-9)


def test_syntax_valid_rate():
    assert syntax_valid_rate(["def f():\n    return 1\n", "def f(:\n", "x = 1\n", "\0"]) == 0.5


def test_reader_reads_gzip_and_names_line_and_field(tmp_path):
    assert [p.task_id for p in read_problems(write_problems(tmp_path / "p.jsonl.gz"))] == ["Toy/0", "Toy/1", "Toy/2"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(PROBLEMS[0]) + "\n" + json.dumps({**PROBLEMS[1], "test": None}) + "\n")
    with pytest.raises(GenlabError, match=r"bad.jsonl:2: field `test` is not a string"):
        read_problems(bad)
    bad.write_text(json.dumps(PROBLEMS[0]) + "\n{oops\n")
    with pytest.raises(GenlabError, match=r"bad.jsonl:2: not valid JSON"):
        read_problems(bad)
    missing = {k: v for k, v in PROBLEMS[0].items() if k != "entry_point"}
    bad.write_text(json.dumps(missing) + "\n")
    with pytest.raises(GenlabError, match=r"bad.jsonl:1: field `entry_point` is missing"):
        read_problems(bad)


def test_wrong_hanging_and_hostile_solutions_fail_and_correct_ones_pass(tmp_path):
    problems = read_problems(write_problems(tmp_path / "p.jsonl"))
    outside = tmp_path / "escaped.txt"
    bad = [
        "    return a - b\n",  # wrong
        "    while True:\n        pass\n",  # hangs
        "    import os\n    while True:\n        os.fork()\n",  # fork bomb
        f"    open({str(outside)!r}, 'w').write('x')\n    return a + b\n",  # writes outside, then is right
        "    import sys\n    sys.exit(0)\n",  # leaves before the tests can fail
        "    return a +\n",  # not Python
    ]
    completions = {"Toy/0": [PROBLEMS[0]["canonical_solution"]] + bad,
                   "Toy/1": [PROBLEMS[1]["canonical_solution"]], "Toy/2": [PROBLEMS[2]["canonical_solution"]]}
    candidates, tasks, summary = evaluate_code(problems, completions, [1, 2], Limits(wall_seconds=3, cpu_seconds=2), progress=False)
    toy0 = [r for r in candidates if r["task_id"] == "Toy/0"]
    assert [r["passed"] for r in toy0] == [True] + [False] * len(bad)
    assert [r["status"] for r in toy0][1:4] == ["failed", "timeout", "blocked"]
    assert toy0[4]["status"] == "blocked" and not outside.exists()
    assert [r["syntax_valid"] for r in toy0] == [True] * 6 + [False]
    assert tasks[0]["n"] == 7 and tasks[0]["correct"] == 1
    assert tasks[0]["pass@1"] == pytest.approx(1 / 7) and tasks[0]["pass@2"] == pytest.approx(pass_at_k(7, 1, 2))
    assert "pass@2" not in tasks[1]  # n = 1 < k
    assert summary["pass@1"] == pytest.approx((1 / 7 + 1 + 1) / 3) and "pass@2" not in summary


def test_cli_canonical_self_check_scores_100_percent(tmp_path, cli):
    problems = write_problems(tmp_path / "HumanEval.jsonl.gz")
    out = tmp_path / "results"
    r = cli("eval-code", "--canonical", "--problems", problems, "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pass@1"] == 1.0 and summary["syntax_valid"] == 1.0 and summary["statuses"] == {"passed": 3}
    tasks = [json.loads(line) for line in (out / "tasks.jsonl").read_text().splitlines()]
    assert [t["task_id"] for t in tasks] == ["Toy/0", "Toy/1", "Toy/2"] and all(t["pass@1"] == 1.0 for t in tasks)
    assert len((out / "completions.jsonl").read_text().splitlines()) == 3
    # A broken canonical solution is caught by the self-check.
    broken = write_problems(tmp_path / "broken.jsonl", [PROBLEMS[0], {**PROBLEMS[1], "canonical_solution": "    return True\n"}])
    r = cli("eval-code", "--canonical", "--problems", broken, "--out", out, "--quiet")
    assert r.returncode == 0 and json.loads((out / "summary.json").read_text())["pass@1"] == 0.5


def test_cli_errors_are_one_line(tmp_path, cli):
    r = cli("eval-code", "--canonical", "--problems", tmp_path / "none.jsonl")
    assert r.returncode == 1 and r.stderr.strip() == f"error: {tmp_path / 'none.jsonl'}: no such problems file"
    r = cli("eval-code", "--canonical", "--problems", write_problems(tmp_path / "p.jsonl"), "--k", "0,x")
    assert r.returncode == 1 and r.stderr.startswith("error: --k '0,x'")
