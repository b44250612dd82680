"""Language-model decoding over the sequence protocol (init_state / step).

One loop serves every family: the prompt is fed once, then one token per
step with the state (KV cache, RNN hidden state) carried along. The next
token is drawn from the logits after, in order: repetition penalty ->
temperature -> top-k -> top-p. Temperature 0 is greedy. Draws come from a
seeded torch.Generator, so the same seed gives the same text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch


@dataclass
class Decoding:
    max_new_tokens: int = 200
    temperature: float = 0.8  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    repetition_penalty: float = 1.0  # 1.0 = off; >1 discourages tokens already present (Keskar et al. 2019)


def filter_logits(logits: torch.Tensor, history: torch.Tensor | None, d: Decoding) -> torch.Tensor:
    """logits (B, V) -> adjusted logits (B, V) with -inf where a token may not be drawn."""
    logits = logits.float()
    if d.repetition_penalty != 1.0 and history is not None and history.numel():
        seen = torch.gather(logits, 1, history)
        seen = torch.where(seen > 0, seen / d.repetition_penalty, seen * d.repetition_penalty)
        logits = logits.scatter(1, history, seen)
    if d.temperature <= 0:
        return logits
    logits = logits / d.temperature
    if d.top_k and d.top_k < logits.size(-1):
        kth = torch.topk(logits, d.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if d.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token when the tokens before it already cover top_p; the top token always stays.
        drop = cumulative - sorted_logits.softmax(-1) >= d.top_p
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return logits


def choose(logits: torch.Tensor, d: Decoding, generator: torch.Generator | None) -> torch.Tensor:
    """Adjusted logits (B, V) -> next token ids (B, 1)."""
    if d.temperature <= 0:
        return logits.argmax(-1, keepdim=True)
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)


@torch.inference_mode()  # lighter than no_grad: no version counters on the cache tensors
def generate_tokens(
    model,
    prompt: torch.Tensor,
    d: Decoding,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> Iterator[torch.Tensor]:
    """Yield the next token ids (B,) one step at a time after `prompt` (B, T0), T0 >= 1.

    With `use_cache=False` every step recomputes the whole (cropped) context: slower, and the
    reference the cached path matches token for token. Past a bounded context (`max_context`) each
    new token sees exactly the last `max_context` tokens, as in training: positions shift at every
    step, so that window is recomputed (a sliding window) instead of read from the cache.
    """
    model.eval()
    tokens = prompt
    limit = getattr(model, "max_context", None)
    state = None
    for _ in range(d.max_new_tokens):
        if not use_cache or (limit is not None and tokens.size(1) > limit):
            context = tokens if limit is None else tokens[:, -limit:]
            logits = model(context)[:, -1]
        elif state is None:
            state = model.init_state(tokens.size(0))
            logits, state = model.step(tokens, state)
            logits = logits[:, -1]
        else:
            logits, state = model.step(tokens[:, -1:], state)
            logits = logits[:, -1]
        history = tokens if d.repetition_penalty != 1.0 else None
        nxt = choose(filter_logits(logits, history, d), d, generator)  # (B, 1)
        tokens = torch.cat([tokens, nxt], dim=1)
        yield nxt[:, 0]
