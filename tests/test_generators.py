"""Callers use a generator's declared surface (genlab/core/generators.py), not what lies under it."""

import ast
from pathlib import Path

from genlab.core.config import SampleConfig
from genlab.core.generators import SamplingParams

SRC = Path(__file__).resolve().parents[1] / "src" / "genlab"
# Where a generator's insides may be read: the families' homes (tasks/, models/); export/, whose job is to write
# a family's model in another format; rl/, which trains a text run's model as a policy.
HOMES = ("tasks", "models", "export", "rl")


def generator_name(node: ast.expr) -> str | None:
    """`gen`, `generator`, `s.generator`, `self.generator`: the name when the expression is a generator."""
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
    return name if name in ("gen", "generator", "g", "policy") else None


def reach_ins(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        if node.attr in ("model", "store") and generator_name(node.value):
            found.append(f"{generator_name(node.value)}.{node.attr}")
        if node.attr == "tk" and isinstance(node.value, ast.Attribute) and node.value.attr == "tokenizer":
            found.append("tokenizer.tk")
    return found


def test_no_module_outside_a_familys_home_reaches_into_a_generator():
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.relative_to(SRC).parts[0] in HOMES:
            continue
        offenders += [f"{path.relative_to(SRC)}: {what}" for what in reach_ins(ast.parse(path.read_text()))]
    assert offenders == []


def test_the_scan_finds_what_it_forbids():
    code = "def f(gen, s):\n    gen.model.eval()\n    s.generator.store.shape\n    gen.tokenizer.tk.decode([1])\n    gen.config.model\n"
    assert sorted(reach_ins(ast.parse(code))) == ["gen.model", "generator.store", "tokenizer.tk"]


def test_sampling_defaults_are_set_once_and_a_run_starts_from_them():
    run = SampleConfig()
    for name in ("max_new_tokens", "temperature", "top_k", "top_p", "repetition_penalty"):
        assert getattr(run, name) == getattr(SamplingParams(), name), name
    assert set(SampleConfig.model_fields) - {"prompt"} <= set(SamplingParams.__dataclass_fields__)
