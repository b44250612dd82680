"""Structured-output engines side by side: outlines-core (genlab's, a whole automaton compiled up front in a
bounded process) against llguidance (a lazy parser that computes each token's mask on demand).

    python bench/constraint_engines.py [--budget 20]

Builds two tokenizers here (genlab's char tokenizer and a 2,048-token byte-level BPE, both trained on the
standard library's docstrings, offline) and, for each case (a JSON schema or a regex, from the ones the
server's clients send to the ones that froze it), measures per engine: the time to compile (outlines-core
through genlab's own compiler process, budget --budget s; llguidance's matcher construction), the mean time
to compute one token's mask while walking a valid answer, and the memory the compiled form holds
(outlines-core: its transitions; llguidance: the process's resident growth). Writes
bench/results/constraint_engines.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "constraint_engines.json"

PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"},
                                           "ok": {"type": "boolean"}}, "required": ["name", "age", "ok"]}
CASES = [  # (name, "schema" or "regex", the constraint, a valid answer to walk)
    ("person object", "schema", PERSON, '{"name": "Ann", "age": 31, "ok": true}'),
    ("enum of 3", "schema", {"enum": ["red", "green", "blue"]}, '"green"'),
    ("date regex", "regex", r"[0-9]{4}-[0-9]{2}-[0-9]{2}", "2024-05-17"),
    ("string maxLength 256", "schema", {"type": "string", "maxLength": 256}, '"' + "a" * 40 + '"'),
    ("string maxLength 4096", "schema", {"type": "string", "maxLength": 4096}, '"' + "a" * 40 + '"'),
    ("any JSON object", "schema", {"type": "object"}, '{"a": [1, {"b": null}]}'),
    ("(a|b)*a(a|b){18}", "regex", "(a|b)*a(a|b){18}", "a" * 19),
]


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def tokenizers():
    from genlab.core.config import TokenizerConfig
    from genlab.datasets.named import resolve_source
    from genlab.tokenizers import train_tokenizer

    source = resolve_source("python-docs", False)
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    text = "".join(f.read_text(encoding="utf-8", errors="replace") for f in files[:200])[:2_000_000]
    text += "".join(chr(c) for c in range(32, 127)) + "\n"
    bpe = TokenizerConfig(kind="bpe", vocab_size=2048)
    return {"char": train_tokenizer("char", [text], None), "bpe 2048": train_tokenizer("bpe", [text], bpe)}


def outlines_case(tokenizer, kind: str, constraint, answer: str, budget: float) -> dict:
    from genlab.sampling.constraints import Constraint, ConstraintTooCostly, Pattern
    from genlab.server.structured import schema_regex

    end = tokenizer.encode("\n")[-1]
    regex = constraint if kind == "regex" else schema_regex(constraint)
    t = time.perf_counter()
    try:
        pattern = Pattern(regex, tokenizer, end, timeout=budget, memory_mb=2048)
    except ConstraintTooCostly as e:
        return {"compile_s": round(time.perf_counter() - t, 3), "error": str(e)}
    compile_s = time.perf_counter() - t
    row, ids = Constraint(pattern), tokenizer.encode(answer)
    t = time.perf_counter()
    for i, token in enumerate(ids):
        row.allowed(len(ids) - i + 8, "cpu")
        row.advance(token)
    mask_us = 1e6 * (time.perf_counter() - t) / len(ids)
    return {"compile_s": round(compile_s, 3), "mask_us_per_token": round(mask_us, 1), "transitions": pattern.transitions,
            "held_mb": round(pattern.transitions * 120 / 2**20, 1)}


def llguidance_case(tokenizer, kind: str, constraint, answer: str) -> dict:
    import llguidance
    import numpy as np
    from llguidance.numpy import allocate_token_bitmask, fill_next_token_bitmask

    class Wrapped:  # what llguidance's TokenizerWrapper reads
        def __init__(self):
            self.tokens = tokenizer.token_bytes()
            self.eos_token_id = tokenizer.encode("\n")[-1]
            self.bos_token_id = None
            self.special_token_ids = []
            self.is_tokenizer_wrapper = True

        def __call__(self, s):
            return tokenizer.encode(s.decode("utf-8", "replace") if isinstance(s, bytes) else s)

    lltok = llguidance.LLTokenizer(llguidance.TokenizerWrapper(Wrapped()))
    grammar = (llguidance.LLMatcher.grammar_from_regex(constraint) if kind == "regex"
               else llguidance.LLMatcher.grammar_from_json_schema(constraint))
    before = resident_bytes()
    t = time.perf_counter()
    matcher = llguidance.LLMatcher(lltok, grammar, log_level=0)
    compile_s = time.perf_counter() - t
    if matcher.is_error():
        return {"compile_s": round(compile_s, 3), "error": matcher.get_error()[:160]}
    mask = allocate_token_bitmask(1, lltok.vocab_size)
    ids = tokenizer.encode(answer)
    t = time.perf_counter()
    for token in ids:
        fill_next_token_bitmask(matcher, mask)
        assert (mask[0, token // 32] >> (token % 32)) & 1, "llguidance refused a token of a valid answer"
        matcher.consume_token(token)
    mask_us = 1e6 * (time.perf_counter() - t) / len(ids)
    held = max(0, resident_bytes() - before)
    np.asarray(mask)
    return {"compile_s": round(compile_s, 4), "mask_us_per_token": round(mask_us, 1), "held_mb": round(held / 2**20, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=float, default=20.0, help="seconds outlines-core may compile one case")
    args = p.parse_args()
    import llguidance

    rows = []
    for tok_name, tokenizer in tokenizers().items():
        for name, kind, constraint, answer in CASES:
            row = {"tokenizer": tok_name, "case": name,
                   "outlines_core": outlines_case(tokenizer, kind, constraint, answer, args.budget),
                   "llguidance": llguidance_case(tokenizer, kind, constraint, answer)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    import outlines_core

    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_avg_at_start": list(os.getloadavg()),
              "command": " ".join(["python"] + sys.argv), "versions": {"outlines_core": getattr(outlines_core, "__version__", "?"),
                                                                       "llguidance": llguidance.get_version()},
              "rows": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
