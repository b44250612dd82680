"""Rewards for `genlab rl RUN --reward NAME`: a batch of generated texts in, one number per text out.

A reward is any callable with this signature (pass your own as `--reward my_module:my_function`):

    def reward(texts: list[str], prompts: list[str], **options) -> list[float]

`texts` are the generated continuations, `prompts` the prompts they continue (same length); `options` are
the `--reward-arg key=value` pairs, as strings. Shipped:

    code-parses   1 when prompt + text parses as Python (ast.parse), else 0
    code-passes   1 when the completion passes its problem's tests, run in genlab's sandbox (the prompts are
                  the problems' prompts; option problems=FILE, a HumanEval-format JSONL)
    contains      the share of the comma-separated `words` that the text contains
    avoids        1 minus the share of the comma-separated `words` that the text contains
    length        1 when min <= len(text) <= max (characters; options min, max), falling off linearly outside
"""

from __future__ import annotations

import importlib
from typing import Callable

from genlab.core.errors import GenlabError
from genlab.metrics.code import is_valid_python, program_of, read_problems
from genlab.metrics.sandbox import run_many

Reward = Callable[..., list[float]]


def code_parses(texts: list[str], prompts: list[str], **options) -> list[float]:
    return [float(is_valid_python(p + t)) for t, p in zip(texts, prompts)]


def code_passes(texts: list[str], prompts: list[str], problems: str = "", **options) -> list[float]:
    by_prompt = {p.prompt: p for p in read_problems(problems)}
    programs = []
    for text, prompt in zip(texts, prompts):
        if prompt not in by_prompt:
            raise GenlabError(f"code-passes: a prompt is not one of {problems}'s problems")
        programs.append(program_of(by_prompt[prompt], text))
    return [float(outcome.passed) for outcome in run_many(programs)]


def _words(words: str) -> list[str]:
    found = [w.strip() for w in words.split(",") if w.strip()]
    if not found:
        raise GenlabError("--reward-arg words=...: give the words, comma-separated")
    return found


def contains(texts: list[str], prompts: list[str], words: str = "", **options) -> list[float]:
    wanted = _words(words)
    return [sum(w in t for w in wanted) / len(wanted) for t in texts]


def avoids(texts: list[str], prompts: list[str], words: str = "", **options) -> list[float]:
    return [1.0 - share for share in contains(texts, prompts, words)]


def length(texts: list[str], prompts: list[str], **options) -> list[float]:
    lo, hi = int(options.get("min", 0)), int(options.get("max", 1_000_000))
    miss = [lo - len(t) if len(t) < lo else max(len(t) - hi, 0) for t in texts]  # characters outside [min, max]
    return [max(0.0, 1.0 - m / max(hi, 1)) for m in miss]


SHIPPED: dict[str, Reward] = {"code-parses": code_parses, "code-passes": code_passes, "contains": contains,
                              "avoids": avoids, "length": length}


def load_reward(name: str) -> Reward:
    """A shipped reward by name, or `module:function` imported from the Python path."""
    if name in SHIPPED:
        return SHIPPED[name]
    if ":" not in name:
        raise GenlabError(f"--reward: {name!r} is not a shipped reward ({', '.join(SHIPPED)}) nor module:function")
    module, function = name.split(":", 1)
    try:
        found = getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as e:
        raise GenlabError(f"--reward {name}: cannot import it ({e})") from None
    if not callable(found):
        raise GenlabError(f"--reward {name}: not a function")
    return found
