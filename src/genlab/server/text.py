"""What completions and chat share: a request's rows, its constraint, its place in the queue, and its answer
collected or streamed, every piece of it stopped the moment its client leaves."""

from __future__ import annotations

import time
import uuid
from abc import ABC, abstractmethod

from fastapi import Request

from genlab.core.errors import GenlabError
from genlab.server import logprobs as lp
from genlab.server import sse
from genlab.server.disconnects import ClientGone, watched
from genlab.server.registry import Endpoint, Served
from genlab.server.schemas import APIError
from genlab.server.structured import requested_regex

TEXT_KINDS = ("text", "code")


def check(row, event) -> None:
    """Raise what a job's event says instead of a token: its client left, the server is stopping, or the
    model failed."""
    if row == "gone":
        raise ClientGone
    if row == "shutdown":
        raise APIError(503, "the server is shutting down; retry on its next start", code="shutting_down", kind="server_error")
    if row is None:
        raise APIError(500, event, kind="server_error")


def leave(s: Served, job) -> None:
    """The client went away: its job leaves the queue, and whoever awaits its events hears so."""
    s.scheduler.cancel(job)
    job.events.put_nowait(("gone", None))


async def result(job):
    """A work job's result (prompt scores, embeddings)."""
    row, value = await job.events.get()
    check(row, value)
    return value


class TextEndpoint(Endpoint, ABC):
    """Completions and chat: the same rows, queue and streaming; each says how its answers and chunks look."""

    kind = "text"  # "chat" for chat completions

    # ---- the rows of a request ----------------------------------------------------------------------

    async def rows(self, s: Served, prompts: list[str], body, stops: list[str] | None, param: str, logprobs: int | None):
        gen = s.generator
        seed = body.seed if body.seed is not None else int.from_bytes(uuid.uuid4().bytes[:6], "big")
        if len(prompts) * body.n > self.registry.max_queue:
            raise APIError(400, f"n: {len(prompts)} prompt(s) x n={body.n} rows can never fit this server's queue of "
                                f"{self.registry.max_queue} rows", "n", "invalid_value")
        bias = body.bias_pairs(gen.vocab_size)
        rows = []
        for i, prompt in enumerate(prompts):
            try:
                rows += gen.requests(prompt, body.n, seed + i * body.n, stops,
                                     max_new_tokens=body.token_budget(gen.config.sample.max_new_tokens),
                                     temperature=body.temperature, top_k=body.top_k, top_p=body.top_p,
                                     repetition_penalty=body.repetition_penalty, presence_penalty=body.presence_penalty,
                                     frequency_penalty=body.frequency_penalty, logit_bias=bias, logprobs=logprobs,
                                     logprobs_mode=body.genlab_logprobs_mode)
            except GenlabError as e:  # e.g. a character the model never saw
                raise APIError(400, f"{param}: {e}", param, "invalid_value") from None
        asked = requested_regex(body)
        if asked is not None:
            pattern = await s.patterns.get(*asked)
            budget = rows[0].decoding.max_new_tokens
            if pattern.fewest_tokens() > budget:
                raise APIError(400, f"max_tokens: {budget} tokens cannot hold an answer of this form (it needs at least "
                                    f"{pattern.fewest_tokens()})", "max_tokens", "invalid_value")
            for r in rows:
                r.constraint = pattern.constraint()
        return rows

    async def echoed(self, request: Request, s: Served, body, rows) -> list[tuple[str, list]] | None:
        """With `echo`, each row's prompt and (where logprobs are asked) its tokens' log-probabilities, scored in
        the model's queue once per distinct prompt."""
        if not getattr(body, "echo", False):
            return None
        gen, scored = s.generator, {}
        out = []
        for r in rows:
            key = tuple(r.prompt)
            if r.decoding.logprobs is not None and key not in scored:
                job = s.submit([], work=("score", (r.prompt, r.decoding.logprobs)))
                async with watched(request, lambda: leave(s, job)):
                    scored[key] = await result(job)
            out.append((gen.tokenizer.decode(r.prompt), scored.get(key, [])))
        return out

    # ---- the answer ---------------------------------------------------------------------------------

    async def answer(self, request: Request, s: Served, body, rows, prompt_tokens: int):
        """Queue the rows; stream their tokens, or wait for all of them and answer in one body."""
        prompts = await self.echoed(request, s, body, rows)
        job = s.submit(rows)
        ident = ("chatcmpl-" if self.kind == "chat" else "cmpl-") + uuid.uuid4().hex[:24]
        if body.stream:
            usage = bool(body.stream_options and body.stream_options.include_usage)
            return sse.response(self.stream(s, job, ident, usage, prompt_tokens, prompts))
        async with watched(request, lambda: leave(s, job)):
            texts, finish, generated, scored = await self.collect(s, job)
        return {"id": ident, "object": "chat.completion" if self.kind == "chat" else "text_completion",
                "created": int(time.time()), "model": s.name,
                "choices": self.choices(s, texts, finish, scored, prompts, rows[0].decoding.logprobs is not None),
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": generated,
                          "total_tokens": prompt_tokens + generated}}

    async def collect(self, s: Served, job) -> tuple[list[str], list[str], int, list[list]]:
        rows = len(job.requests)
        texts, finish, done, generated = [""] * rows, [None] * rows, 0, 0
        scored: list[list[lp.TokenLogprob]] = [[] for _ in range(rows)]
        if not rows or job.requests[0].decoding.max_new_tokens == 0:  # echo alone: nothing to generate
            s.scheduler.cancel(job)
            return texts, ["length"] * rows, 0, scored
        try:
            while done < rows:
                row, event = await job.events.get()
                check(row, event)
                texts[row] += event.text
                if event.logprob is not None:
                    scored[row].append(lp.from_event(event))
                generated += 1
                if event.finish is not None:
                    finish[row] = event.finish
                    done += 1
        finally:
            if done < rows:
                s.scheduler.cancel(job)
        return texts, finish, generated, scored

    @abstractmethod
    def choices(self, s: Served, texts, finish, scored, prompts, wanted: bool) -> list[dict]:
        """The answer's choices, from each row's text, finish reason and scored tokens."""

    @abstractmethod
    def chunk(self, s: Served, ident: str, created: int, row: int, text: str | None, finish: str | None,
              usage_wanted: bool, offsets: list[int], first: bool = False, scored=None) -> str:
        """One streamed chunk; `offsets` is where each row's next text starts (the legacy text_offset)."""

    async def stream(self, s: Served, job, ident: str, usage_wanted: bool, prompt_tokens: int, echoed):
        created, rows = int(time.time()), len(job.requests)
        done, generated, offsets = 0, 0, [0] * rows
        piece = lambda *a, **k: self.chunk(s, ident, created, *a, usage_wanted=usage_wanted, offsets=offsets, **k)  # noqa: E731
        try:
            if self.kind == "chat":
                for row in range(rows):
                    yield piece(row, None, None, first=True)
            for row, (text, scored) in enumerate(echoed or []):  # the prompt first, with its logprobs
                yield piece(row, text, None, scored=scored or None)
            if job.requests and job.requests[0].decoding.max_new_tokens == 0:
                for row in range(rows):
                    yield piece(row, None, "length")
                done = rows
            while done < rows:
                ready = [await job.events.get()]
                while not job.events.empty():  # what piled up while the client read: one write, not one each
                    ready.append(job.events.get_nowait())
                out = []
                for row, event in ready:
                    try:
                        check(row, event)
                    except (APIError, ClientGone) as e:
                        out.append(sse.event(e.body() if isinstance(e, APIError) else {}))
                        done = rows
                        break
                    generated += 1
                    if event.logprob is not None:  # one chunk per token: each carries its own logprobs
                        out.append(piece(row, event.text, None, scored=[lp.from_event(event)]))
                    elif event.text:
                        out.append(piece(row, event.text, None))
                    if event.finish is not None:
                        done += 1
                        out.append(piece(row, None, event.finish))
                yield "".join(out)
            if usage_wanted:
                usage = {"prompt_tokens": prompt_tokens, "completion_tokens": generated, "total_tokens": prompt_tokens + generated}
                obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
                yield sse.event({"id": ident, "object": obj, "created": created, "model": s.name, "choices": [], "usage": usage})
            yield sse.DONE
        finally:
            if done < rows:  # the client went away (or an error): free its rows at the next step
                s.scheduler.cancel(job)
