"""POST /v1/chat/completions: a chat through the model's own template (hf: models that have one) or genlab's
plain one (`System: ...`, `User: ...`, `Assistant:` blocks), then decoded as a completion."""

from __future__ import annotations


from fastapi import Request

from genlab.server import logprobs as lp
from genlab.server import sse
from genlab.server.schemas import MAX_PROMPT_CHARS, APIError, ChatRequest, parse
from genlab.server.text import TEXT_KINDS, TextEndpoint

ROLE_NAMES = {"system": "System", "developer": "System", "user": "User", "assistant": "Assistant"}
CHAT_STOPS = ["\nUser:", "\nSystem:"]


def plain_chat_prompt(messages) -> str:
    """`System: ...`, `User: ...`, `Assistant: ...` blocks separated by blank lines, ending in `Assistant:`."""
    return "".join(f"{ROLE_NAMES[m.role]}: {m.content}\n\n" for m in messages) + "Assistant:"


class Chat(TextEndpoint):
    kind = "chat"

    async def create(self, request: Request, body: dict):
        body = parse(ChatRequest, body)
        s = self.registry.lookup(body.model, TEXT_KINDS)
        prompt = s.generator.chat_prompt([m.model_dump(exclude_none=True) for m in body.messages])
        stops = body.stop or []  # a chat ends at the model's end of turn, not at a run's completion stops
        if prompt is None:
            prompt, stops = plain_chat_prompt(body.messages), stops + CHAT_STOPS
        if len(prompt) > MAX_PROMPT_CHARS:  # the limit holds for the prompt the messages make, template and all
            raise APIError(400, f"messages: the chat's prompt is {len(prompt)} characters, over the limit of "
                                f"{MAX_PROMPT_CHARS}", "messages", "invalid_value")
        rows = await self.rows(s, [prompt], body, stops, "messages", (body.top_logprobs or 0) if body.logprobs else None)
        return await self.answer(request, s, body, rows, len(rows[0].prompt))

    def choices(self, s, texts, finish, scored, prompts, wanted: bool) -> list[dict]:
        tokenizer = s.generator.tokenizer
        return [{"index": i, "message": {"role": "assistant", "content": t.strip()},
                 "logprobs": {"content": lp.chat_content(tokenizer, scored[i])} if wanted else None, "finish_reason": f}
                for i, (t, f) in enumerate(zip(texts, finish))]

    def chunk(self, s, ident, created, row, text, finish, usage_wanted, offsets, first=False, scored=None) -> str:
        delta = ({"role": "assistant", "content": ""} if first else {}) | ({"content": text} if text or scored else {})
        shown = {"content": lp.chat_content(s.generator.tokenizer, scored)} if scored else None
        choice = {"index": row, "delta": delta, "logprobs": shown, "finish_reason": finish}
        body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": s.name, "choices": [choice]}
        if usage_wanted:
            body["usage"] = None
        return sse.event(body)
