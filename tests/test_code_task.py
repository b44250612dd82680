"""The code task: train on a code base, stop where a function ends, complete a body, fine-tune, eval-code a run."""

import json

import pytest
import torch
from typer.testing import CliRunner

from genlab.api import load, train
from genlab.core.config import validate_config
from genlab.core.runs import RunDir, load_tensors
from genlab.tasks.code import PYTHON_STOPS, body_indent, function_body

PROMPT = 'def add(a, b):\n    """Return the sum of a and b."""\n'
BODY = "    return a + b\n"
OTHER = "def sub(x, y):\n    return x - y\n"
PROBLEM = {"task_id": "Toy/0", "entry_point": "add", "prompt": PROMPT, "canonical_solution": BODY,
           "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n"}


def code_config(data, out, **train_options):
    return {
        "task": "code", "out": str(out), "data": {"source": str(data), "val_fraction": 0.1},
        "tokenizer": {"vocab_size": 300},
        "model": {"name": "gpt", "n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32},
        "train": {"max_steps": 150, "batch_size": 16, "lr": 1e-2, "warmup_steps": 10, "eval_interval": 1000,
                  "checkpoint_interval": 1000, "eval_batches": 2, "sample_tokens": 10, "progress": False, **train_options},
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    (root / "mathlib.py").write_text((PROMPT + BODY + "\n\n" + OTHER + "\n\n") * 60)
    (root / "notes.txt").write_text("not code\n")
    return root


@pytest.fixture(scope="module")
def memorized(project, tmp_path_factory):
    """A tiny GPT that has learned the project by heart (greedy decoding reproduces it)."""
    return train(validate_config(code_config(project, tmp_path_factory.mktemp("runs") / "code")), progress=False)


def test_code_run_defaults_to_the_code_tokenizer(memorized):
    assert memorized.config.tokenizer.kind == "code"
    saved = json.loads(RunDir(memorized.path).tokenizer.read_text())
    assert saved["genlab_tokenizer"] == "code"
    assert validate_config({"task": "code"}).data.source == "python-docs"  # the raw default; train() fills python-stdlib


def test_generation_stops_where_the_function_ends_and_completes_a_body(memorized):
    gen = load(memorized.path)
    assert gen.complete_function(PROMPT, temperature=0, max_new_tokens=60)[0].rstrip("\n") == BODY.rstrip("\n")
    # Without the Python stops the model runs on into the next function.
    assert "def sub" in gen.generate(PROMPT, temperature=0, max_new_tokens=60, stop=[])[0].text
    streamed = "".join(gen.stream(PROMPT, temperature=0, max_new_tokens=60))
    (stopped,) = gen.generate(PROMPT, temperature=0, max_new_tokens=60)
    assert streamed == stopped.text and "\ndef " not in streamed and stopped.finish_reason == "stop"


def test_body_indent_follows_the_signature_or_docstring():
    assert body_indent(PROMPT) == "    " and body_indent("def f(x):\n") == "    "
    assert body_indent("class A:\n    def f(self):\n") == "        " and body_indent("") == ""


def test_function_body_cuts_at_the_first_unindented_line():
    assert function_body("    return 1\n\nprint(2)\n") == "    return 1\n"
    assert function_body("(a):\n    return a\nx = 1") == "(a):\n    return a"
    assert "\ndef " in PYTHON_STOPS and "\nclass " in PYTHON_STOPS


def test_cli_sample_and_eval_code_on_a_run(memorized, tmp_path):
    from genlab.cli import _register, app

    _register()
    runner = CliRunner()
    r = runner.invoke(app, ["sample", str(memorized.path), "--prompt", "def add(a, b):", "--temperature", "0", "--max-new-tokens", "60"])
    assert r.exit_code == 0, r.output
    assert r.output.rstrip("\n") == (PROMPT + BODY).rstrip("\n")  # the whole function, and not the next one
    problems = tmp_path / "p.jsonl"
    problems.write_text(json.dumps(PROBLEM) + "\n" + json.dumps({**PROBLEM, "task_id": "Toy/1", "test": "def check(c):\n    assert c(1, 1) == 3\n"}) + "\n")
    r = runner.invoke(app, ["eval-code", str(memorized.path), "--problems", str(problems), "--k", "1,2", "--n", "2",
                            "--temperature", "0", "--max-new-tokens", "60", "--out", str(tmp_path / "res"), "--quiet"])
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "res" / "summary.json").read_text())
    assert summary["pass@1"] == 0.5 and summary["pass@2"] == 0.5 and summary["syntax_valid"] == 1.0
    rows = [json.loads(line) for line in (tmp_path / "res" / "completions.jsonl").read_text().splitlines()]
    assert [r["passed"] for r in rows] == [True, True, False, False] and rows[0]["completion"].rstrip("\n") == BODY.rstrip("\n")


def test_fine_tuning_a_code_run_starts_from_its_weights_and_tokenizer(project, tmp_path):
    base = train(validate_config({**code_config(project, tmp_path / "base", max_steps=20), "tokenizer": {"kind": "char"}}), progress=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "twice.py").write_text("def sum(a, b):\n    return b + a - a + b\n\n\n" * 80)  # only characters the base knows
    # One step at a learning rate below float32's resolution: the run starts, and ends, at the base's weights.
    untrained = train(validate_config(code_config(other, tmp_path / "ft0", max_steps=1, lr=1e-30, init_from=str(base.path))), progress=False)
    assert untrained.config.tokenizer.kind == "char"  # the base run's kind, not the code default
    assert RunDir(untrained.path).tokenizer.read_text() == RunDir(base.path).tokenizer.read_text()
    start, origin = load_tensors(RunDir(untrained.path).weights), load_tensors(RunDir(base.path).weights)
    assert start.keys() == origin.keys() and all(torch.equal(start[k], origin[k]) for k in start)
    tuned = train(validate_config(code_config(other, tmp_path / "ft", max_steps=40, init_from=str(base.path))), progress=False)
    before = load(base.path).evaluate(data=str(other), samples=1, sample_tokens=5, functions=2)["loss"]
    after = load(tuned.path).evaluate(data=str(other), samples=1, sample_tokens=5, functions=2)["loss"]
    assert after < before - 0.5
