"""POST /v1/completions: text and code runs (and hf: models), whole or streamed, with echo and logprobs."""

from __future__ import annotations

import math

from fastapi import Request

from genlab.server import logprobs as lp
from genlab.server import sse
from genlab.server.schemas import CompletionRequest, parse
from genlab.server.text import TEXT_KINDS, TextEndpoint


class Completions(TextEndpoint):
    kind = "text"

    async def create(self, request: Request, body: dict):
        body = parse(CompletionRequest, body)
        s = self.registry.lookup(body.model, TEXT_KINDS)
        rows = await self.rows(s, body.prompt, body, body.stop, "prompt", body.logprobs)
        return await self.answer(request, s, body, rows, sum(len(r.prompt) for r in rows[:: body.n]))

    def choices(self, s, texts, finish, scored, prompts, wanted: bool) -> list[dict]:
        tokenizer, out = s.generator.tokenizer, []
        for i, (t, f) in enumerate(zip(texts, finish)):
            head, head_scored = prompts[i] if prompts else ("", [])
            shown = lp.completion_logprobs(tokenizer, head_scored + scored[i]) if wanted else None
            choice = {"index": i, "text": head + t, "logprobs": shown, "finish_reason": f}
            if head_scored[1:]:  # extension: the echoed prompt's perplexity under the model
                choice["genlab_prompt_perplexity"] = math.exp(-sum(e.logprob for e in head_scored[1:]) / len(head_scored[1:]))
            out.append(choice)
        return out

    def chunk(self, s, ident, created, row, text, finish, usage_wanted, offsets, first=False, scored=None) -> str:
        shown = lp.completion_logprobs(s.generator.tokenizer, scored, offsets[row]) if scored else None
        offsets[row] += len(text or "")
        choice = {"index": row, "text": text or "", "logprobs": shown, "finish_reason": finish}
        body = {"id": ident, "object": "text_completion", "created": created, "model": s.name, "choices": [choice]}
        if usage_wanted:  # as OpenAI's spec says: every chunk has usage, null but in the last
            body["usage"] = None
        return sse.event(body)
