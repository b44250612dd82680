"""Scoring given text under a sequence model: each token's log-probability given the tokens before it, as
decoding sees them (at most the model's context window), and the mean last-layer state of a text.

Both are generators that yield between pieces of work, so that a server's decode loop can interleave
them with decoding and drop them when their client leaves; the generator's return value is the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generator

import torch


@dataclass
class TokenLogprob:
    token: int
    logprob: float | None  # None for a prompt's first token: nothing came before it
    top: list[tuple[int, float]]


def _entry(row: torch.Tensor, token: int, top: int) -> TokenLogprob:
    best = row.topk(min(top, row.numel())) if top else None
    return TokenLogprob(token, row[token].item(), list(zip(best.indices.tolist(), best.values.tolist())) if best is not None else [])


def prompt_logprobs(model, ids: list[int], top: int, device, max_elements: int = 1 << 24) -> Generator[None, None, list[TokenLogprob]]:
    """Each token's log-probability (and its `top` likeliest alternatives); the first token has none.
    Past the context window each token sees the window before it: those windows go through the model
    as batches of one forward each, sized so a batch's logits stay under `max_elements` numbers."""
    limit = model.max_context or len(ids)
    out = [TokenLogprob(ids[0], None, [])]
    with torch.inference_mode():
        head = ids[:limit]
        logits = model(torch.tensor([head], device=device))[0].float().log_softmax(-1)  # (T, V)
        out += [_entry(logits[p - 1], head[p], top) for p in range(1, len(head))]
    yield
    ends = list(range(limit, len(ids)))  # token i is scored from the window ids[i - limit + 1 : i + 1]
    if not ends:
        return out
    batch = max(1, min(256, max_elements // (limit * logits.shape[-1])))
    tokens = torch.tensor(ids, device=device)
    for start in range(0, len(ends), batch):
        part = ends[start: start + batch]
        with torch.inference_mode():
            windows = torch.stack([tokens[i - limit + 1: i + 1] for i in part])  # (B, limit)
            rows = model(windows)[:, limit - 2].float().log_softmax(-1)  # (B, V): each predicts its window's last token
            out += [_entry(rows[b], ids[i], top) for b, i in enumerate(part)]
        yield
    return out


def mean_states(model, texts: list[list[int]], device) -> Generator[None, None, list]:
    """One vector per text: the mean over its tokens of the model's last-layer states (numpy float32)."""
    out = []
    for ids in texts:
        with torch.inference_mode():
            out.append(model.hidden(torch.tensor([ids], device=device))[0].float().mean(0).cpu().numpy())
        yield
    return out
