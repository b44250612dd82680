"""Log-probabilities in OpenAI's two shapes, and of a prompt's own tokens (`echo`).

    chat:        {"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}]}
    completions: {"tokens", "token_logprobs", "top_logprobs": [{token: logprob}], "text_offset"}

A token is shown as the tokenizer decodes it alone (a byte-level BPE token that splits a character shows
U+FFFD; its `bytes` are still the token's text as UTF-8).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch


@dataclass
class TokenLogprob:
    token: int
    logprob: float | None  # None for a prompt's first token: nothing came before it
    top: list[tuple[int, float]]


def from_event(event) -> TokenLogprob:
    return TokenLogprob(event.token, event.logprob, event.top_logprobs or [])


@torch.inference_mode()
def prompt_logprobs(model, ids: list[int], top: int, device) -> list[TokenLogprob]:
    """Each prompt token's log-probability under the model given the tokens before it (at most the model's
    context window of them, as decoding sees them); the first token has none."""
    limit = getattr(model, "max_context", None) or len(ids)
    out = [TokenLogprob(ids[0], None, [])]

    def score(context: list[int], positions: range) -> None:
        logits = model(torch.tensor([context], device=device))[0].float().log_softmax(-1)  # (T, V)
        for p in positions:  # row p - 1 predicts token p of the context
            row = logits[p - 1]
            best = row.topk(min(top, row.numel())) if top else None
            out.append(TokenLogprob(context[p], row[context[p]].item(),
                                    list(zip(best.indices.tolist(), best.values.tolist())) if best is not None else []))

    score(ids[:limit], range(1, min(limit, len(ids))))
    for i in range(limit, len(ids)):  # past the window: each token sees the window before it
        score(ids[i - limit + 1: i + 1], range(limit - 1, limit))
    return out


_TEXTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # tokenizer -> {token id: its text}


def token_text(tokenizer, token: int) -> str:
    """A token as the tokenizer decodes it alone (cached per tokenizer: every answer asks for the same few)."""
    cache = _TEXTS.setdefault(tokenizer, {})
    text = cache.get(token)
    if text is None:
        text = cache[token] = tokenizer.decode([token])
    return text


def chat_content(tokenizer, entries: list[TokenLogprob]) -> list[dict]:
    def one(token: int, logprob: float) -> dict:
        text = token_text(tokenizer, token)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    return [one(e.token, e.logprob) | {"top_logprobs": [one(t, lp) for t, lp in e.top]} for e in entries]


def completion_logprobs(tokenizer, entries: list[TokenLogprob], offset: int = 0) -> dict:
    tokens = [token_text(tokenizer, e.token) for e in entries]
    offsets, at = [], offset
    for text in tokens:
        offsets.append(at)
        at += len(text)
    return {"tokens": tokens, "token_logprobs": [e.logprob for e in entries],
            "top_logprobs": [({token_text(tokenizer, t): lp for t, lp in e.top} if e.logprob is not None else None)
                             for e in entries],
            "text_offset": offsets}
