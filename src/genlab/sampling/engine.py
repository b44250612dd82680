"""The step engine: every sequence genlab samples is decoded here, one token per active slot per step.

    engine = Engine(model, tokenizer, device)
    slot = engine.add(Request(prompt_ids, SamplingParams(...), seed=1, stop=["\\n\\n"]))
    while engine.active:
        for event in engine.step():     # Event(slot, token, text, finish)
            ...
    engine.cancel(slot)                 # leave early (a client went away, music long enough)

A slot is one row of output with its own seed, decoding options and stop
strings. Requests may join and leave between steps. With `continuous=True`
(the server, where requests come and go) a model with slots (`init_slots`,
`fill_slot`, `step_slots`: the GPT) gets continuous batching, as vLLM does
it: a new request is prefilled alone into a free row of one shared cache,
then every step feeds all running rows in one batch, each at its own
position; a finished row is free at once. Otherwise (and for RNNs, FNet,
n-gram and Hugging Face models) slots step in groups: slots added between
two steps whose prompts have the same length start together, one batched
forward per group per step with one state (KV cache, RNN hidden state) per
group; a finished row stays in its group's batch (its output is ignored)
until the whole group is done. Both give a request the same tokens.

Each slot draws from its own seeded random.Random, so a request's tokens
do not depend on which other requests share the engine. Past a bounded
context (`model.max_context`) every new token sees exactly the last
`max_context` tokens, as in training: the window is recomputed (a sliding
window), so cached and uncached decoding agree token for token.

Logits go through, in order: repetition penalty -> temperature -> top-k ->
top-p. Temperature 0 is greedy.
"""

from __future__ import annotations

import functools
import heapq
import random
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch

from genlab.core.generators import SamplingParams


# Temperatures below this draw greedily: dividing float32 logits by them overflows (to inf - inf = nan).
GREEDY_BELOW = 1e-6


@dataclass
class Request:
    prompt: list[int]  # token ids, at least one
    decoding: SamplingParams = field(default_factory=SamplingParams)
    seed: int | None = None  # None: a fresh random seed
    stop: Sequence[str] = ()  # text that ends the slot (needs a tokenizer); not part of the output
    constraint: object | None = None  # sampling/constraints.py: a pattern the output must match (one per row)


@dataclass
class Event:
    slot: int
    token: int
    text: str  # text this token settled ("" without a tokenizer, or while it may still begin a stop string)
    finish: str | None = None  # None while running; "length", "stop" or "time" on the slot's last event
    logprob: float | None = None  # the token's log-probability, where the request asked (SamplingParams.logprobs)
    top_logprobs: list[tuple[int, float]] | None = None  # the likeliest tokens and theirs, best first


def filter_logits(logits: torch.Tensor, history: torch.Tensor | None, d: SamplingParams,
                  generated: torch.Tensor | None = None) -> torch.Tensor:
    """logits (B, V) -> adjusted logits (B, V) with -inf where a token may not be drawn. `history` (B, T): the
    context (repetition penalty); `generated` (B, G): the tokens generated so far (OpenAI's penalties)."""
    logits = logits.float()
    if d.logit_bias:
        ids = torch.tensor([i for i, _ in d.logit_bias], device=logits.device)
        logits = logits.index_add(1, ids, torch.tensor([b for _, b in d.logit_bias], device=logits.device).expand(logits.size(0), -1))
    if d.repetition_penalty != 1.0 and history is not None and history.numel():
        seen = torch.gather(logits, 1, history)
        seen = torch.where(seen > 0, seen / d.repetition_penalty, seen * d.repetition_penalty)
        logits = logits.scatter(1, history, seen)
    if (d.presence_penalty or d.frequency_penalty) and generated is not None and generated.numel():
        counts = torch.zeros_like(logits).scatter_add_(1, generated, torch.ones_like(generated, dtype=logits.dtype))
        logits = logits - d.frequency_penalty * counts - d.presence_penalty * (counts > 0).to(logits.dtype)
    if d.temperature < GREEDY_BELOW:
        return logits
    if d.temperature != 1.0:  # from its maximum down, so a tiny temperature gives -inf, never inf - inf = nan
        logits = (logits - logits.amax(-1, keepdim=True)) / d.temperature
    if d.top_k and d.top_k < logits.size(-1):
        kth = torch.topk(logits, d.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if d.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        # Drop a token when the tokens before it already cover top_p; the top token always stays.
        drop = probs.cumsum(-1) - probs >= d.top_p
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return logits


def choose(logits: torch.Tensor, greedy: list[bool], uniforms: list[float]) -> torch.Tensor:
    """Adjusted logits (B, V), whether each row is greedy, one uniform draw per row -> next ids (B,).

    A sampled row takes the first token whose cumulative probability passes its uniform draw
    (inverse-CDF sampling): the draws come from each slot's own generator, the rest is batched.
    Few calls on purpose: at one token per row per step, each torch call is a visible share of the time."""
    if all(greedy):
        return logits.argmax(-1)
    cdf = logits.softmax(-1).cumsum(-1)  # (B, V)
    targets = torch.tensor(uniforms, dtype=cdf.dtype, device=cdf.device)[:, None] * cdf[:, -1:]  # (B, 1)
    drawn = torch.searchsorted(cdf, targets, right=True)[:, 0].clamp_(max=logits.size(-1) - 1)
    if any(greedy):
        drawn = torch.where(torch.tensor(greedy, device=logits.device), logits.argmax(-1), drawn)
    return drawn


@functools.lru_cache(maxsize=256)
def _overlaps(stop: str) -> tuple[int, ...]:
    """KMP's table of `stop`: item i is the length of the longest proper prefix of stop[:i + 1] that also ends it."""
    table, k = [0] * len(stop), 0
    for i in range(1, len(stop)):
        while k and stop[i] != stop[k]:
            k = table[k - 1]
        if stop[i] == stop[k]:
            k += 1
        table[i] = k
    return tuple(table)


class TextAssembler:
    """Turns one slot's token ids into text as they arrive: holds back incomplete UTF-8 (byte-level
    BPE can split a character across tokens) and any tail that may begin a stop string.

    Stop strings are followed a character at a time (Knuth-Morris-Pratt): for each, how much of it the text
    ends with. Searching the whole text and trying every prefix at each token cost a request's stop strings
    squared per token (8,000-character stops: 1.4 ms a token a row, holding up every request batched with it)."""

    def __init__(self, tokenizer, stop: Sequence[str]):
        self.tokenizer, self.stop = tokenizer, [s for s in stop if s]
        self.tables = [_overlaps(s) for s in self.stop]
        self.matched = [0] * len(self.stop)  # per stop string: the length of its prefix the text ends with
        self.text = ""  # settled text so far
        self.pending: list[int] = []
        self.emitted = 0
        self.stopped = False

    def push(self, token: int) -> None:
        if self.stopped:
            return
        self.pending.append(token)
        piece = self.tokenizer.decode(self.pending)
        if piece.endswith("\ufffd") and len(self.pending) < 4:
            return  # wait for the rest of a multi-byte character
        start = len(self.text)
        self.text += piece
        self.pending = []
        for at, char in enumerate(piece, start + 1):  # at: the text's length once `char` is in
            cut = None  # where the text ends if a stop string is complete here (the longest one's start)
            for i, (stop, table) in enumerate(zip(self.stop, self.tables)):
                k = self.matched[i]
                while k and char != stop[k]:
                    k = table[k - 1]
                k += char == stop[k]
                if k == len(stop):
                    cut = at - k if cut is None else min(cut, at - k)
                self.matched[i] = k
            if cut is not None:
                self.text, self.stopped = self.text[:cut], True
                return

    def finish(self) -> None:
        if self.pending and not self.stopped:
            self.text += self.tokenizer.decode(self.pending)
            self.pending = []
        self.stopped = True

    def take(self) -> str:
        """The new text that can no longer change."""
        safe = len(self.text) - (max(self.matched, default=0) if not self.stopped else 0)
        out = self.text[self.emitted:safe]
        self.emitted = max(self.emitted, safe)
        return out


@dataclass
class _Slot:
    request: Request
    rng: random.Random  # one uniform draw per token (inverse-CDF sampling); Python's, as a torch call per row costs more
    text: TextAssembler | None
    tokens: list[int] = field(default_factory=list)  # generated so far
    finish: str | None = None
    row: int | None = None  # its row of the pool's cache (slot-capable models)
    fed: int = 0  # tokens of prompt + output that row holds
    deadline: float | None = None  # time.monotonic() past which it ends (SamplingParams.max_time)


class _Group:
    """Slots that started together (models without slots): one (B, T) token tensor and one model state."""

    def __init__(self, slots: list[int], prompts: list[list[int]], device):
        self.slots = slots
        self.tokens = torch.tensor(prompts, dtype=torch.long, device=device)  # (B, T)
        self.state = None
        self.started = False


class _Pool:
    """The cache rows of a model with slots (init_slots / fill_slot / step_slots): a request holds one row
    from its prefill to its end, and every step feeds all rows in one batch, each at its own position."""

    def __init__(self, model, capacity: int = 8):
        self.model, self.capacity = model, capacity
        self.state = model.init_slots(capacity)
        self.free = list(range(capacity))  # a heap: the lowest free row first, so rows in use stay packed

    def take(self) -> int:
        if not self.free:  # twice the rows; the rows in use keep their place
            bigger = self.model.init_slots(2 * self.capacity)
            _copy_rows(bigger, self.state, self.capacity)
            self.state = bigger
            self.free = list(range(self.capacity, 2 * self.capacity))
            self.capacity *= 2
        return heapq.heappop(self.free)

    def give(self, row: int) -> None:
        heapq.heappush(self.free, row)


def _copy_rows(dest, src, n: int) -> None:
    """Copy the first n rows of every tensor in the nested dicts/lists `src` into the same places of `dest`."""
    if isinstance(src, torch.Tensor):
        dest[:n] = src
    elif isinstance(src, dict):
        for k in dest:  # what the bigger state holds (not what src made of itself since, such as views of its rows)
            _copy_rows(dest[k], src[k], n)
    elif isinstance(src, list):
        for d, s in zip(dest, src):
            _copy_rows(d, s, n)


class Engine:
    def __init__(self, model, tokenizer=None, device: torch.device | str = "cpu", use_cache: bool = True,
                 continuous: bool = False):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.use_cache = use_cache
        self.limit = model.max_context  # the sequence protocol's bound (None: any length)
        # How far an uncached step must look back: the bounded context, or a receptive field (WaveNet, whose
        # cached state is exact at any length, but whose logits depend on the last receptive_field tokens only).
        self.window = self.limit or getattr(model, "receptive_field", None)
        self.slots: dict[int, _Slot] = {}
        self.running: list[int] = []  # in the order they were added
        # Continuous batching (a server: requests come and go) where the model supports rows at different
        # positions; else groups of rows that started together step as one batch, which is faster when
        # all requests arrive at once (sample, eval, benches).
        self.pool = _Pool(model) if continuous and use_cache and hasattr(model, "step_slots") else None
        self.groups: list[_Group] = []
        self.waiting: list[int] = []
        self.next_slot = 0

    @property
    def active(self) -> bool:
        return bool(self.running)

    def add(self, request: Request) -> int:
        """Queue `request`; it starts at the next step. Returns its slot id."""
        if not request.prompt:
            raise ValueError("a request needs at least one prompt token")
        seed = request.seed if request.seed is not None else int(torch.seed() % (1 << 63))
        slot = self.next_slot
        self.next_slot += 1
        text = TextAssembler(self.tokenizer, request.stop) if self.tokenizer is not None else None
        budget = request.decoding.max_time
        self.slots[slot] = _Slot(request, random.Random(seed), text, deadline=None if budget is None else time.monotonic() + budget)
        self.running.append(slot)
        self.waiting.append(slot)
        if request.decoding.max_new_tokens <= 0:
            self._finish(slot, "length")
        return slot

    def cancel(self, slot: int) -> None:
        """Stop `slot` now; it produces no more events."""
        s = self.slots.get(slot)
        if s is not None and s.finish is None:
            self._finish(slot, "cancelled")
        self._prune()

    def tokens(self, slot: int) -> list[int]:
        return self.slots[slot].tokens

    def text(self, slot: int) -> str:
        s = self.slots[slot]
        return s.text.text if s.text is not None else ""

    def finish_reason(self, slot: int) -> str | None:
        return self.slots[slot].finish

    def release(self, slot: int) -> None:
        """Forget a slot (a long-running engine keeps nothing of finished requests)."""
        self.cancel(slot)
        self.slots.pop(slot, None)

    # ---- one step --------------------------------------------------------------------------------

    @torch.inference_mode()  # lighter than no_grad: no version counters on the cache tensors
    def step(self) -> list[Event]:
        """Advance every running slot by one token; returns their events (a finished slot's last has `finish`)."""
        slots, logits = self._pool_logits() if self.pool is not None else self._group_logits()
        events = []
        if slots:
            filtered, picked = self._pick(slots, logits)
            picked = picked.tolist()
            events = [self._end(slot, token) if self._ends(slot, token) else self._advance(slot, token)
                      for slot, token in zip(slots, picked)]
            self._add_logprobs(events, logits, filtered)
            self._extend_groups(dict(zip(slots, picked)))
        self._prune()
        return events

    def _context(self, slot: int) -> list[int]:
        s = self.slots[slot]
        return s.request.prompt + s.tokens

    def _pool_logits(self) -> tuple[list[int], torch.Tensor | None]:
        """Next-token logits of every running slot: new ones prefilled alone, the rest fed in one batch."""
        self.waiting = []
        self._pack_rows()
        found: dict[int, torch.Tensor] = {}
        prefilled: dict[tuple, tuple[int, torch.Tensor]] = {}  # prompt -> (row, logits): n rows, one prefill
        batch = []
        for slot in self.running:
            s = self.slots[slot]
            length = len(s.request.prompt) + len(s.tokens)
            if self.limit is not None and length > self.limit:  # past the window: recompute it, as training saw it
                self._release_row(s)
                window = torch.tensor([self._context(slot)[-self.limit:]], device=self.device)
                found[slot] = self.model(window)[:, -1]
            elif s.fed == 0:
                s.row, context = self.pool.take(), tuple(self._context(slot))
                if context in prefilled and hasattr(self.model, "copy_slot"):
                    source, found[slot] = prefilled[context]
                    self.model.copy_slot(self.pool.state, source, s.row, length)
                else:
                    found[slot] = self.model.fill_slot(self.pool.state, s.row, torch.tensor([context], device=self.device))[:, -1]
                    prefilled[context] = (s.row, found[slot])
                s.fed = length
            else:
                batch.append(slot)
        if batch:
            batch.sort(key=lambda x: self.slots[x].row)  # rows in order: packed rows are read as a view, not copied
            rows = [self.slots[x].row for x in batch]
            last = torch.tensor([self.slots[x].tokens[-1] for x in batch], device=self.device)
            positions = [self.slots[x].fed for x in batch]
            out = self.model.step_slots(self.pool.state, rows, last, positions)  # (B, V)
            for i, slot in enumerate(batch):
                found[slot] = out[i: i + 1]
                self.slots[slot].fed += 1
        slots = [x for x in self.running if x in found]
        if len(slots) <= 1:  # a lone row (one client): its logits as they are, no copy
            return slots, found[slots[0]] if slots else None
        return slots, torch.cat([found[x] for x in slots])

    def _group_logits(self) -> tuple[list[int], torch.Tensor | None]:
        self._start_waiting()
        slots, parts = [], []
        for group in self.groups:
            logits = self._next_logits(group)  # (B, V)
            rows = [i for i, s in enumerate(group.slots) if self._running(s)]
            slots += [group.slots[i] for i in rows]
            parts.append(logits if len(rows) == len(group.slots) else logits[rows])
        if len(parts) <= 1:  # one group (the usual case): no copy
            return slots, parts[0] if parts else None
        return slots, torch.cat(parts)

    def _extend_groups(self, chosen: dict[int, int]) -> None:
        """Append this step's tokens to each group's tensor; a finished row repeats its last token (nobody reads it)."""
        for group in self.groups:
            last = group.tokens[:, -1].tolist()
            nxt = [chosen.get(slot, last[i]) for i, slot in enumerate(group.slots)]
            group.tokens = torch.cat([group.tokens, torch.tensor(nxt, device=group.tokens.device)[:, None]], dim=1)

    def _start_waiting(self) -> None:
        by_length: dict[int, list[int]] = {}
        for slot in self.waiting:
            if self._running(slot):
                by_length.setdefault(len(self.slots[slot].request.prompt), []).append(slot)
        self.waiting = []
        for slots in by_length.values():
            self.groups.append(_Group(slots, [self.slots[s].request.prompt for s in slots], self.device))

    def _next_logits(self, group: _Group) -> torch.Tensor:
        tokens = group.tokens
        if not self.use_cache or (self.limit is not None and tokens.size(1) > self.limit):
            context = tokens if self.window is None else tokens[:, -self.window:]
            return self.model(context)[:, -1]
        if not group.started:
            group.state = self.model.init_state(tokens.size(0))
            group.started = True
            logits, group.state = self.model.step(tokens, group.state)
        else:
            logits, group.state = self.model.step(tokens[:, -1:], group.state)
        return logits[:, -1]

    def _pick(self, slots: list[int], logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(filtered logits, next token ids (len(slots),)): one batched filter when the slots decode alike
        and none depends on its history, else slot by slot."""
        decodings = [self.slots[s].request.decoding for s in slots]
        constrained = [j for j, s in enumerate(slots) if self.slots[s].request.constraint is not None]
        if constrained:  # tokens that cannot continue a row's pattern are out before anything else looks
            allowed = torch.ones_like(logits, dtype=torch.bool)
            for j in constrained:
                s = self.slots[slots[j]]
                allowed[j] = s.request.constraint.allowed(s.request.decoding.max_new_tokens - len(s.tokens), logits.device)
            logits = logits.masked_fill(~allowed, float("-inf"))
        if all(d == decodings[0] for d in decodings) and not decodings[0].needs_history:
            filtered = filter_logits(logits, None, decodings[0])
        else:
            tensor = lambda ids: torch.tensor([ids], dtype=torch.long, device=logits.device)  # noqa: E731
            filtered = torch.cat([filter_logits(logits[j: j + 1], tensor(self._context(s)) if d.needs_history else None, d,
                                                tensor(self.slots[s].tokens) if d.needs_history else None)
                                  for j, (s, d) in enumerate(zip(slots, decodings))])
        greedy = [d.temperature < GREEDY_BELOW for d in decodings]
        return filtered, choose(filtered, greedy, [self.slots[s].rng.random() for s in slots])

    def _add_logprobs(self, events: list[Event], logits: torch.Tensor, filtered: torch.Tensor) -> None:
        """Fill in the log-probabilities the slots asked for, of the raw logits or of the processed ones: one
        log-softmax and one top-k per kind for all the rows that asked, then plain lists."""
        asked = [(j, e, self.slots[e.slot].request.decoding) for j, e in enumerate(events)]
        asked = [(j, e, d) for j, e, d in asked if d.logprobs is not None]
        for mode, source in (("raw", logits), ("processed", filtered)):
            group = [(j, e, d) for j, e, d in asked if d.logprobs_mode == mode]
            if not group:
                continue
            rows = source[torch.tensor([j for j, _, _ in group], device=source.device)].float().log_softmax(-1)
            tokens = torch.tensor([e.token for _, e, _ in group], device=source.device)
            chosen = rows.gather(1, tokens[:, None])[:, 0].tolist()
            k = min(max(d.logprobs for _, _, d in group), rows.size(-1))
            values, ids = rows.topk(k) if k else (None, None)
            values, ids = (values.tolist(), ids.tolist()) if k else ([], [])
            for i, (_, event, d) in enumerate(group):
                event.logprob = chosen[i]
                if d.logprobs:
                    event.top_logprobs = [(t, v) for t, v in zip(ids[i][: d.logprobs], values[i][: d.logprobs]) if v > float("-inf")]

    def _ends(self, slot: int, token: int) -> bool:
        """A constrained row drew its end (its pattern complete): it ends without the token."""
        c = self.slots[slot].request.constraint
        return c is not None and c.advance(token)

    def _end(self, slot: int, token: int) -> Event:
        s = self.slots[slot]
        self._finish(slot, "stop")
        return Event(slot, token, s.text.take() if s.text is not None else "", "stop")

    def _advance(self, slot: int, token: int) -> Event:
        s = self.slots[slot]
        s.tokens.append(token)
        finish = None
        if s.text is not None:
            s.text.push(token)
            if s.text.stopped:
                finish = "stop"
        c = s.request.constraint
        if finish is None and c is not None and c.must_end(s.request.decoding.max_new_tokens - len(s.tokens)):
            finish = "stop"  # the pattern is complete and nothing may follow
        if finish is None and len(s.tokens) >= s.request.decoding.max_new_tokens:
            finish = "length"
        if finish is None and s.deadline is not None and time.monotonic() >= s.deadline:
            finish = "time"
        if finish is not None:
            self._finish(slot, finish)
        return Event(slot, token, s.text.take() if s.text is not None else "", finish)

    def _finish(self, slot: int, reason: str) -> None:
        s = self.slots[slot]
        s.finish = reason
        if s.text is not None:
            s.text.finish()
        self._release_row(s)

    def _pack_rows(self) -> None:
        """Move the highest rows in use down into the holes finished requests left, so the rows in use are the
        first ones and a step reads its cache as one view. Gathering rows with holes between them was a third
        of a step at 16 clients (a client between two requests leaves a hole)."""
        free, used = self.pool.free, self.pool.capacity - len(self.pool.free)
        if not free or free[0] >= used or not hasattr(self.model, "copy_slot"):
            return
        holders = sorted((s for s in self.slots.values() if s.row is not None), key=lambda s: s.row)
        while free[0] < used:
            mover, hole = holders.pop(), heapq.heappop(free)  # the highest row in use, the lowest free one
            self.model.copy_slot(self.pool.state, mover.row, hole, mover.fed)
            heapq.heappush(free, mover.row)
            mover.row = hole

    def _release_row(self, s: _Slot) -> None:
        if s.row is not None:
            self.pool.give(s.row)
            s.row = None

    def _running(self, slot: int) -> bool:
        return slot in self.slots and self.slots[slot].finish is None

    def _prune(self) -> None:
        self.running = [s for s in self.running if self._running(s)]
        self.groups = [g for g in self.groups if any(map(self._running, g.slots))]
        self.waiting = [s for s in self.waiting if self._running(s)]


def decode(engine: Engine, requests: list[Request]) -> list[int]:
    """Add `requests` and step until all of them finish; returns their slots (read with engine.tokens/text)."""
    slots = [engine.add(r) for r in requests]
    pending = set(slots)
    while pending and engine.active:
        for event in engine.step():
            if event.finish is not None:
                pending.discard(event.slot)
    return slots
