"""Log-probabilities in OpenAI's two shapes (sampling/scoring.py scores a prompt's own tokens for `echo`).

    chat:        {"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}]}
    completions: {"tokens", "token_logprobs", "top_logprobs": [{token: logprob}], "text_offset"}

A token is shown as the tokenizer decodes it alone (a byte-level BPE token that splits a character shows
U+FFFD; its `bytes` are still the token's text as UTF-8).
"""

from __future__ import annotations

import weakref

from genlab.sampling.scoring import TokenLogprob


def from_event(event) -> TokenLogprob:
    return TokenLogprob(event.token, event.logprob, event.top_logprobs or [])


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
