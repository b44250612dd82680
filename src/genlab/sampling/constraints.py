"""Constrained decoding: tokens that cannot continue a pattern are masked before each draw.

A pattern is a regular expression over the output text — a JSON schema becomes one through
`outlines_core.json_schema`, a list of choices is their alternation. `compile_pattern` compiles it by
`outlines_core` into an automaton over this tokenizer's tokens (characters or byte-level BPE tokens alike,
by their bytes), in a process with a time and memory budget; where the automaton does not fit the budget
it falls back to llguidance, which matches lazily and builds any pattern in about a millisecond
(bench/constraint_engines.py) but cannot tell how many tokens an answer still needs. With an automaton,
two rules on top of it make every answer complete:

- budget: from each state we know the fewest tokens that reach a final state (a breadth-first search
  backwards over the automaton), so a token is allowed only if what follows still fits in max_tokens;
- end: in a final state the row may end. The model has no end-of-text token, so ending is offered as the
  token that ends its documents (`end_token`, a line break for text runs): drawing it there ends the row
  with `stop`; a final state with no way on ends it at once.

With llguidance only the second rule holds: an answer that has not finished at max_tokens ends there with
`length`, as OpenAI's structured output does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import weakref
from collections import deque
from pathlib import Path

import llguidance
import numpy as np
import torch
from llguidance.numpy import allocate_token_bitmask, fill_next_token_bitmask

from genlab.core.errors import GenlabError


class ConstraintTooCostly(GenlabError):
    """The pattern's automaton did not fit in the time or memory it was given."""


class Pattern:
    """A regular expression compiled against one tokenizer (shared by every row that uses it).

    Compiled in a process of its own (sampling/automaton.py) with `timeout` seconds and `memory_mb` of
    memory: past either the process is gone and ConstraintTooCostly says which.
    """

    def __init__(self, regex: str, tokenizer, end_token: int | None, timeout: float = 10.0, memory_mb: int = 1024):
        if not hasattr(tokenizer, "token_bytes"):
            raise GenlabError("constrained decoding needs a genlab character or BPE tokenizer")
        self.regex, self.vocab_size, self.end_token = regex, tokenizer.vocab_size, end_token
        by_bytes: dict[bytes, list[int]] = {}
        for i, b in enumerate(tokenizer.token_bytes()):
            if b:
                by_bytes.setdefault(b, []).append(i)
        automaton = run_compiler(regex, self.vocab_size, by_bytes, timeout, memory_mb)
        self.initial = automaton["initial"]
        self.final = set(automaton["final"])
        self.next = {s: dict(map(tuple, moves)) for s, moves in automaton["next"]}
        self.transitions = sum(map(len, self.next.values()))  # what the cache weighs it by
        self.distance = self._distances()
        if self.initial not in self.distance:
            raise GenlabError("no text this model can write matches the pattern (it needs characters the model never saw)")

    def _distances(self) -> dict[int, int]:
        """Fewest tokens from each state to a final state (states that cannot finish are absent)."""
        back: dict[int, set[int]] = {}
        for s, moves in self.next.items():
            for n in moves.values():
                back.setdefault(n, set()).add(s)
        distance = {s: 0 for s in self.final}
        todo = deque(self.final)
        while todo:
            s = todo.popleft()
            for prev in back.get(s, ()):
                if prev not in distance:
                    distance[prev] = distance[s] + 1
                    todo.append(prev)
        return distance

    def fewest_tokens(self) -> int:
        return self.distance[self.initial]

    def constraint(self) -> "Constraint":
        return Constraint(self)


# Past this many transitions an automaton is not read in (the lazy matcher takes the pattern): reading and
# searching it holds the interpreter lock for about a second per million, and a server's other requests wait.
MAX_TRANSITIONS = 200_000


def run_compiler(regex: str, vocab_size: int, by_bytes: dict[bytes, list[int]], timeout: float, memory_mb: int) -> dict:
    """The automaton of `regex` from a bounded compiler process (see sampling/automaton.py)."""
    job = json.dumps({"regex": regex, "vocab_size": vocab_size, "memory_mb": memory_mb, "max_transitions": MAX_TRANSITIONS,
                      "tokens": [[b.hex(), ids] for b, ids in by_bytes.items()]})
    script = Path(__file__).with_name("automaton.py")
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "SYSTEMROOT")}
    proc = subprocess.Popen([sys.executable, "-I", str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env, start_new_session=True)  # a signal to the server is not its
    try:
        out, _ = proc.communicate(job.encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise ConstraintTooCostly(f"the pattern took more than {timeout:g} s to compile for this model's tokens") from None
    result = json.loads(out) if proc.returncode == 0 and out else {"error": "memory"}
    if result.get("error") == "memory":  # the allocator gave up (Rust aborts) or Python ran out
        raise ConstraintTooCostly(f"the pattern needs more than {memory_mb} MB or {MAX_TRANSITIONS:,} transitions "
                                  "to compile for this model's tokens")
    if "error" in result:
        raise GenlabError(f"the pattern cannot be compiled for this model's tokens ({result['error']})")
    return result


class Constraint:
    """One row's place in a Pattern."""

    def __init__(self, pattern: Pattern):
        self.pattern, self.state = pattern, pattern.initial

    def allowed(self, remaining: int, device) -> torch.Tensor:
        """(V,) bool: the tokens that may come next with `remaining` tokens left (this one included)."""
        p = self.pattern
        mask = torch.zeros(p.vocab_size, dtype=torch.bool, device=device)
        ok = [t for t, n in p.next.get(self.state, {}).items() if p.distance.get(n, remaining) <= remaining - 1]
        if ok:
            mask[torch.tensor(ok, device=device)] = True
        if self.can_end() and p.end_token is not None:
            mask[p.end_token] = True
        return mask

    def can_end(self) -> bool:
        return self.state in self.pattern.final

    def must_end(self, remaining: int) -> bool:
        """Final with no allowed way on: the row ends here."""
        if not self.can_end():
            return False
        p = self.pattern
        return remaining <= 0 or not any(p.distance.get(n, remaining) <= remaining - 1 for n in p.next.get(self.state, {}).values())

    def advance(self, token: int) -> bool:
        """Take `token`; True when it is the end of the row (the end token drawn in a final state). The end
        token ends the row even where the pattern could also take it as text: the mask offered it as the end,
        and taking it as text could lead where the rest no longer fits in max_tokens."""
        if token == self.pattern.end_token and self.can_end():
            return True
        moves = self.pattern.next.get(self.state, {})
        if token in moves:
            self.state = moves[token]
            return False
        raise AssertionError(f"token {token} was drawn where the pattern does not allow it")


def compile_pattern(regex: str, tokenizer, end_token: int | None, timeout: float, memory_mb: int):
    """The automaton of `regex` where it builds within the budget, else llguidance's lazy matcher."""
    try:
        return Pattern(regex, tokenizer, end_token, timeout, memory_mb)
    except ConstraintTooCostly:
        return LazyPattern(regex, tokenizer, end_token)


_GRAMMAR_TOKENIZERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def grammar_tokenizer(tokenizer) -> llguidance.LLTokenizer:
    """`tokenizer`'s tokens as llguidance sees them (built once per tokenizer), with one virtual token past the
    vocabulary as its end-of-text: genlab's models have none, and ending is offered as `end_token` instead."""
    if tokenizer not in _GRAMMAR_TOKENIZERS:
        class Tokens:  # what llguidance.TokenizerWrapper reads
            tokens = list(tokenizer.token_bytes()) + [b"<|genlab end|>"]
            eos_token_id = tokenizer.vocab_size
            bos_token_id = None
            special_token_ids = [tokenizer.vocab_size]
            is_tokenizer_wrapper = True

            def __call__(self, text):
                return tokenizer.encode(text.decode("utf-8", "replace") if isinstance(text, bytes) else text)

        _GRAMMAR_TOKENIZERS[tokenizer] = llguidance.LLTokenizer(llguidance.TokenizerWrapper(Tokens()))
    return _GRAMMAR_TOKENIZERS[tokenizer]


class LazyPattern:
    """A regular expression llguidance matches lazily over this tokenizer's tokens (no automaton built)."""

    transitions = 0  # nothing compiled to hold

    def __init__(self, regex: str, tokenizer, end_token: int | None):
        if not hasattr(tokenizer, "token_bytes"):
            raise GenlabError("constrained decoding needs a genlab character or BPE tokenizer")
        self.regex, self.vocab_size, self.end_token = regex, tokenizer.vocab_size, end_token
        self.tokens = grammar_tokenizer(tokenizer)
        self.grammar = llguidance.LLMatcher.grammar_from_regex(regex)
        probe = llguidance.LLMatcher(self.tokens, self.grammar, log_level=0)
        if probe.is_error():
            raise GenlabError(f"the pattern cannot be compiled ({probe.get_error().splitlines()[0][:160]})")
        if LazyConstraint(self).dead_end():
            raise GenlabError("no text this model can write matches the pattern (it needs characters the model never saw)")

    def fewest_tokens(self) -> int:
        return 0  # not known without the automaton: an answer may end at max_tokens

    def constraint(self) -> "LazyConstraint":
        return LazyConstraint(self)


class LazyConstraint:
    """One row's place in a LazyPattern: the same surface as Constraint."""

    def __init__(self, pattern: LazyPattern):
        self.pattern = pattern
        self.matcher = llguidance.LLMatcher(pattern.tokens, pattern.grammar, log_level=0)
        self.bits = allocate_token_bitmask(1, pattern.tokens.vocab_size)
        self.content: np.ndarray | None = None  # (V,) bool: the tokens that continue the pattern now

    def _content(self) -> np.ndarray:
        if self.content is None:
            fill_next_token_bitmask(self.matcher, self.bits)
            self.content = np.unpackbits(self.bits[0].view(np.uint8), bitorder="little")[: self.pattern.vocab_size].astype(bool)
        return self.content

    def allowed(self, remaining: int, device) -> torch.Tensor:
        mask = torch.from_numpy(self._content().copy())
        if (self.can_end() or self.dead_end()) and self.pattern.end_token is not None:
            mask[self.pattern.end_token] = True
        return mask.to(device)

    def dead_end(self) -> bool:
        """Nothing this model can write continues the pattern (it needs tokens the model lacks): the row can
        only end, unfinished. (An automaton knows such states in advance; a lazy matcher finds them here.)"""
        return not self.can_end() and not self._content().any()

    def can_end(self) -> bool:
        return self.matcher.is_accepting()

    def must_end(self, remaining: int) -> bool:
        return self.can_end() and (remaining <= 0 or not self._content().any())

    def advance(self, token: int) -> bool:
        if token == self.pattern.end_token and (self.can_end() or self.dead_end()):
            return True  # as Constraint.advance: the end token ends a row that may end
        if self._content()[token]:
            self.matcher.consume_token(token)
            self.content = None
            return False
        raise AssertionError(f"token {token} was drawn where the pattern does not allow it")
