"""The HTTP server: OpenAI's API over genlab's generators (FastAPI), a Prometheus /metrics and a playground page.

    GET  /v1/models                 the served models, each named after its run folder (or --name)
    POST /v1/completions            text and code runs, hf: models; streamed as Server-Sent Events with stream=true
    POST /v1/chat/completions       the same through a chat template (docs/serve.md)
    POST /v1/embeddings             text and code runs: the mean of the last layer's states over the input's tokens
    POST /v1/images/generations     image runs: b64_json PNGs
    POST /v1/music/generations      music runs (genlab's own, same style): MIDI, WAV and piano roll in base64
    GET  /health, /metrics, /       liveness, Prometheus text, the playground

Text is decoded by one Scheduler per model (continuous batching, serve/batching.py); images and music
are made one request at a time per model in a worker thread. Every error is a JSON body in OpenAI's
shape; nothing a client sends is ever used as a path.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import io
import json
import logging
import math
import re
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from genlab.server import logprobs as lp
from genlab.server.batching import QueueFull, Scheduler
from genlab.samples import ImageSample
from genlab.sampling.constraints import Constraint, Pattern
from genlab.server.reload import KeptWeights
from genlab.server.schemas import (APIError, ChatRequest, CompletionRequest, EmbeddingRequest, ImageRequest, MusicRequest,
                                   parse)

log = logging.getLogger("genlab.server")
PLAYGROUND = Path(__file__).with_name("playground.html")

# The plain chat template of genlab runs (HF models with a template of their own use theirs).
ROLE_NAMES = {"system": "System", "developer": "System", "user": "User", "assistant": "Assistant"}
CHAT_STOPS = ["\nUser:", "\nSystem:"]
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def plain_chat_prompt(messages) -> str:
    """`System: ...`, `User: ...`, `Assistant: ...` blocks separated by blank lines, ending in `Assistant:`."""
    return "".join(f"{ROLE_NAMES[m.role]}: {m.content}\n\n" for m in messages) + "Assistant:"


class Metrics:
    """The Prometheus series /metrics shows (one registry per app, so several apps can live in one process)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("genlab_requests", "HTTP requests by path and status", ["path", "status"], registry=r)
        self.tokens = Counter("genlab_generated_tokens", "Tokens generated", ["model"], registry=r)
        self.queue_depth = Gauge("genlab_queue_depth", "Rows waiting for a place in the batch", ["model"], registry=r)
        self.active = Gauge("genlab_active_sequences", "Rows being decoded", ["model"], registry=r)
        self.batch_size = Histogram("genlab_batch_size", "Rows advanced per decode step", ["model"], registry=r,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.ttft = Histogram("genlab_time_to_first_token_seconds", "From request to its first token", ["model"], registry=r,
                              buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


@dataclass
class Served:
    name: str
    generator: object
    scheduler: Scheduler | None = None  # sequence models
    lock: threading.Lock = field(default_factory=threading.Lock)  # image and music: one request at a time
    kept: KeptWeights | None = None  # the run's weights file, swapped in when training improves it
    patterns: dict = field(default_factory=dict)  # compiled output patterns (structured output), by regex

    def fresh(self) -> None:
        """Image and music (under `lock`): take new weights, if any, before this request."""
        if self.kept is not None and self.kept.changed():
            self.kept.reload()

    @property
    def modality(self) -> str:
        return self.generator.modality


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets a 413 (in OpenAI's error shape) before it is read whole."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _send_error(send, APIError(413, f"the request body is over {self.limit} bytes", code="request_too_large"))
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise APIError(413, f"the request body is over {self.limit} bytes", code="request_too_large")
            return message

        await self.app(scope, limited, send)


class Guard:
    """ASGI middleware: the API key (constant-time compare) on /v1/ and /metrics, and requests counted by status.
    (A plain ASGI class rather than an `http` middleware: those break client-disconnect detection on streams.)"""

    def __init__(self, app, key: bytes | None, metrics: Metrics):
        self.app, self.key, self.metrics = app, key, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        label = path if path in KNOWN_PATHS else "other"
        if self.key is not None and (path.startswith("/v1/") or path == "/metrics"):
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            token = given[7:] if given[:7].lower() == b"bearer " else b""
            if not hmac.compare_digest(token, self.key):
                self.metrics.requests.labels(label, "401").inc()
                return await _send_error(send, APIError(401, "a valid API key is needed: Authorization: Bearer KEY",
                                                        code="invalid_api_key"))

        async def counting(message):
            if message["type"] == "http.response.start":
                self.metrics.requests.labels(label, str(message["status"])).inc()
            await send(message)

        try:
            await self.app(scope, receive, counting)
        except APIError as err:  # the body limit, raised while a handler reads
            await _send_error(counting, err)


async def _send_error(send, err: APIError) -> None:
    body = json.dumps(err.body()).encode()
    await send({"type": "http.response.start", "status": err.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app(models: dict[str, object], api_key: str | None = None, max_batch: int = 64, max_queue: int = 256,
               cors_origins: list[str] | None = None, max_body_bytes: int = 4 << 20, web_folders: dict[str, Path] | None = None):
    """A FastAPI app serving `models` (name -> Generator from genlab.load); `web_folders` (name -> a `--format web`
    export of that model) are served as static files under /web/NAME/ for the playground's in-browser run."""

    metrics = Metrics()
    served: dict[str, Served] = {}
    for name, gen in models.items():
        s = Served(name, gen, kept=KeptWeights(gen))
        if gen.modality in ("text", "code"):
            s.scheduler = Scheduler(gen, name, max_batch, max_queue, metrics, s.kept)
        served[name] = s
    started = int(time.time())
    app = FastAPI(title="genlab", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.served, app.state.metrics = served, metrics
    key = api_key.encode() if api_key else None

    @app.exception_handler(APIError)
    async def _api_error(request, err: APIError):
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(Exception)
    async def _internal(request, err: Exception):  # never a stack trace in a response; the log has it
        log.exception("internal error on %s", request.url.path)
        return JSONResponse(APIError(500, "internal error", kind="server_error").body(), status_code=500)

    app.add_middleware(Guard, key=key, metrics=metrics)
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"])
    app.add_middleware(BodyLimit, limit=max_body_bytes)

    def lookup(name: str, kinds: tuple[str, ...]) -> Served:
        s = served.get(name)
        if s is None:
            raise APIError(404, f"model {name!r} is not served here (GET /v1/models lists them)", "model", "model_not_found")
        if s.modality not in kinds:
            raise APIError(400, f"model {name!r} is a {s.modality} model; this endpoint serves {' and '.join(kinds)} models",
                           "model", "wrong_model_kind")
        return s

    async def body_of(request: Request):
        try:
            return json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise APIError(400, "the request body is not valid JSON") from None

    # ---- text -------------------------------------------------------------------------------------

    def sequence_requests(s: Served, prompts: list[str], body, stops: list[str], param: str, logprobs: int | None):
        from genlab.errors import GenlabError

        gen = s.generator
        seed = body.seed if body.seed is not None else int.from_bytes(uuid.uuid4().bytes[:6], "big")
        bias = body.bias_pairs(gen.tokenizer.vocab_size)
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
        asked = body.pattern()
        if asked is not None:
            pattern = compiled(s, *asked)
            if pattern.fewest_tokens() > rows[0].decoding.max_new_tokens:
                raise APIError(400, f"max_tokens: {rows[0].decoding.max_new_tokens} tokens cannot hold an answer of this "
                                    f"form (it needs at least {pattern.fewest_tokens()})", "max_tokens", "invalid_value")
            for r in rows:
                r.constraint = Constraint(pattern)
        return rows

    def compiled(s: Served, regex: str, param: str) -> Pattern:
        from genlab.errors import GenlabError

        if regex not in s.patterns:
            gen = s.generator
            try:
                s.patterns[regex] = Pattern(regex, gen.tokenizer, gen.encode_prompt("")[-1])
            except GenlabError as e:
                raise APIError(400, f"{param}: {e}", param, "invalid_value") from None
            while len(s.patterns) > 32:  # a small cache: the oldest pattern goes first
                s.patterns.pop(next(iter(s.patterns)))
        return s.patterns[regex]

    def submit(s: Served, rows):
        try:
            return s.scheduler.submit(rows)
        except QueueFull:
            raise APIError(429, f"model {s.name!r} is busy (the queue is full); retry shortly", code="queue_full",
                           kind="rate_limit_error", headers={"Retry-After": "1"}) from None

    async def collect(request: Request, s: Served, job) -> tuple[list[str], list[str], int, list[list]]:
        rows = len(job.requests)
        texts, finish, done, generated = [""] * rows, [None] * rows, 0, 0
        scored: list[list[lp.TokenLogprob]] = [[] for _ in range(rows)]
        if not rows or job.requests[0].decoding.max_new_tokens == 0:  # echo alone: nothing to generate
            return texts, ["length"] * rows, 0, scored
        try:
            while done < rows:
                try:
                    row, event = await asyncio.wait_for(job.events.get(), timeout=0.5)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        raise asyncio.CancelledError from None
                    continue
                if row is None:
                    raise APIError(500, event, kind="server_error")
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

    def stream(request: Request, s: Served, job, kind: str, ident: str, usage_wanted: bool, prompt_tokens: int,
               echoed: list[tuple[str, list]] | None):
        created = int(time.time())
        tokenizer = s.generator.tokenizer
        offsets = [0] * len(job.requests)  # where each row's next text starts (the legacy text_offset)

        def chunk(row: int, text: str | None, finish: str | None, first: bool = False, scored=None) -> str:
            shown = None
            if kind == "chat":
                delta = ({"role": "assistant", "content": ""} if first else {}) | ({"content": text} if text or scored else {})
                if scored:
                    shown = {"content": lp.chat_content(tokenizer, scored)}
                choice = {"index": row, "delta": delta, "logprobs": shown, "finish_reason": finish}
                obj = "chat.completion.chunk"
            else:
                if scored:
                    shown = lp.completion_logprobs(tokenizer, scored, offsets[row])
                offsets[row] += len(text or "")
                choice = {"index": row, "text": text or "", "logprobs": shown, "finish_reason": finish}
                obj = "text_completion"
            body = {"id": ident, "object": obj, "created": created, "model": s.name, "choices": [choice]}
            if usage_wanted:  # as OpenAI's spec says: every chunk has usage, null but in the last
                body["usage"] = None
            return "data: " + json.dumps(body) + "\n\n"

        async def events():
            rows = len(job.requests)
            done, generated = 0, 0
            try:
                if kind == "chat":
                    for row in range(rows):
                        yield chunk(row, None, None, first=True)
                for row, (text, scored) in enumerate(echoed or []):  # the prompt first, with its logprobs
                    yield chunk(row, text, None, scored=scored or None)
                if job.requests and job.requests[0].decoding.max_new_tokens == 0:
                    for row in range(rows):
                        yield chunk(row, None, "length")
                    done = rows
                while done < rows:
                    ready = [await job.events.get()]
                    while not job.events.empty():  # what piled up while the client read: one write, not one each
                        ready.append(job.events.get_nowait())
                    out = []
                    for row, event in ready:
                        if row is None:
                            out.append("data: " + json.dumps(APIError(500, event, kind="server_error").body()) + "\n\n")
                            done = rows
                            break
                        generated += 1
                        if event.logprob is not None:  # one chunk per token: each carries its own logprobs
                            out.append(chunk(row, event.text, None, scored=[lp.from_event(event)]))
                        elif event.text:
                            out.append(chunk(row, event.text, None))
                        if event.finish is not None:
                            done += 1
                            out.append(chunk(row, None, event.finish))
                    yield "".join(out)
                if usage_wanted:
                    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": generated, "total_tokens": prompt_tokens + generated}
                    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
                    yield "data: " + json.dumps({"id": ident, "object": obj, "created": created, "model": s.name,
                                                 "choices": [], "usage": usage}) + "\n\n"
                yield "data: [DONE]\n\n"
            finally:
                if done < rows:  # the client went away (or an error): free its rows at the next step
                    s.scheduler.cancel(job)

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    async def echoed(s: Served, body, rows) -> list[tuple[str, list]] | None:
        """With `echo`, each row's prompt text and (where logprobs are asked) its tokens' log-probabilities."""
        if not getattr(body, "echo", False):
            return None
        gen, out = s.generator, []
        for r in rows:
            text = gen.tokenizer.decode(r.prompt)
            scored = []
            if r.decoding.logprobs is not None:
                scored = await asyncio.to_thread(lp.prompt_logprobs, gen.model, r.prompt, r.decoding.logprobs, gen.device)
            out.append((text, scored))
        return out

    async def answer(request: Request, s: Served, body, rows, prompt_tokens: int, kind: str):
        """Queue the rows; stream their tokens, or wait for all of them and answer in one body."""
        prompts = await echoed(s, body, rows)
        job = submit(s, rows)
        ident = ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex[:24]
        if body.stream:
            return stream(request, s, job, kind, ident, bool(body.stream_options and body.stream_options.include_usage), prompt_tokens,
                          prompts)
        texts, finish, generated, scored = await collect(request, s, job)
        wanted = rows[0].decoding.logprobs is not None
        tokenizer = s.generator.tokenizer
        if kind == "chat":
            choices = [{"index": i, "message": {"role": "assistant", "content": t.strip()},
                        "logprobs": {"content": lp.chat_content(tokenizer, scored[i])} if wanted else None, "finish_reason": f}
                       for i, (t, f) in enumerate(zip(texts, finish))]
        else:
            choices = []
            for i, (t, f) in enumerate(zip(texts, finish)):
                head, head_scored = prompts[i] if prompts else ("", [])
                shown = lp.completion_logprobs(tokenizer, head_scored + scored[i]) if wanted else None
                choice = {"index": i, "text": head + t, "logprobs": shown, "finish_reason": f}
                if head_scored[1:]:  # extension: the echoed prompt's perplexity under the model
                    choice["genlab_prompt_perplexity"] = math.exp(-sum(e.logprob for e in head_scored[1:]) / len(head_scored[1:]))
                choices.append(choice)
        return {"id": ident, "object": "chat.completion" if kind == "chat" else "text_completion", "created": int(time.time()),
                "model": s.name, "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": generated, "total_tokens": prompt_tokens + generated}}

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = parse(CompletionRequest, await body_of(request))
        s = lookup(body.model, ("text", "code"))
        rows = sequence_requests(s, body.prompt, body, body.stop, "prompt", body.logprobs)
        return await answer(request, s, body, rows, sum(len(r.prompt) for r in rows[:: body.n]), "text")

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = parse(ChatRequest, await body_of(request))
        s = lookup(body.model, ("text", "code"))
        template = getattr(getattr(s.generator.tokenizer, "tk", None), "chat_template", None)
        if template:  # a Hugging Face model with its own chat template
            prompt = s.generator.tokenizer.tk.apply_chat_template([m.model_dump(exclude_none=True) for m in body.messages],
                                                                  tokenize=False, add_generation_prompt=True)
            stops = body.stop
        else:
            prompt, stops = plain_chat_prompt(body.messages), body.stop + CHAT_STOPS
        rows = sequence_requests(s, [prompt], body, stops, "messages", (body.top_logprobs or 0) if body.logprobs else None)
        return await answer(request, s, body, rows, len(rows[0].prompt), "chat")

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        from genlab.errors import GenlabError

        body = parse(EmbeddingRequest, await body_of(request))
        s = lookup(body.model, ("text", "code", "clip"))
        gen = s.generator
        if gen.modality == "clip":  # a clip run: the caption tower's unit vectors, the space its images share
            vectors = await asyncio.to_thread(gen.embed_texts, list(body.input))
            ids = [text.encode("utf-8") for text in body.input]
        elif not hasattr(gen.model, "hidden"):
            raise APIError(400, f"model {body.model!r} ({gen.config.model.name}) has no hidden states to embed with",
                           "model", "wrong_model_kind")
        else:
            try:
                ids = [gen.tokenizer.encode(text) for text in body.input]
            except GenlabError as e:
                raise APIError(400, f"input: {e}", "input", "invalid_value") from None
            limit = getattr(gen.model, "max_context", None)
            ids = [i[:limit] if limit else i for i in ids]  # the first window of a longer text
            vectors = await asyncio.to_thread(embed, gen, ids)
        data = []
        for i, v in enumerate(vectors):
            value = base64.b64encode(v.astype("<f4").tobytes()).decode() if body.encoding_format == "base64" else v.tolist()
            data.append({"object": "embedding", "index": i, "embedding": value})
        tokens = sum(map(len, ids))
        return {"object": "list", "data": data, "model": body.model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    # ---- images and music ----------------------------------------------------------------------------

    @app.post("/v1/images/generations")
    async def images(request: Request):
        from starlette.concurrency import run_in_threadpool

        body = parse(ImageRequest, await body_of(request))
        s = lookup(body.model, ("image",))
        gen = s.generator
        h, w, _ = gen.store.shape
        if body.size is not None and body.size != f"{w}x{h}":
            raise APIError(400, f"size: this model makes {w}x{h} images, not {body.size}", "size", "invalid_size")
        label = class_of(body.prompt, gen.store.classes) if gen.num_classes else None
        prompt = body.prompt if gen.text_conditioned else None  # a text-to-image run draws the prompt itself
        seed = body.seed if body.seed is not None else int.from_bytes(uuid.uuid4().bytes[:3], "big")

        if body.stream:
            return StreamingResponse(image_events(s, body, seed, label, prompt), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})

        def make():
            with s.lock:
                s.fresh()
                return gen.generate(body.n, seed, label, body.steps, prompt=prompt)

        samples = await run_in_threadpool(make)
        data = [{"b64_json": base64.b64encode(png_of(x.image())).decode(), "revised_prompt": None} for x in samples]
        return {"created": int(time.time()), "data": data}

    @app.post("/v1/music/generations")
    async def music(request: Request):
        from starlette.concurrency import run_in_threadpool

        body = parse(MusicRequest, await body_of(request))
        s = lookup(body.model, ("music",))
        primer = None
        if body.primer:
            try:
                primer = base64.b64decode(body.primer, validate=True)
            except ValueError:
                raise APIError(400, "primer: not base64", "primer", "invalid_value") from None
        seed = body.seed if body.seed is not None else int.from_bytes(uuid.uuid4().bytes[:3], "big")
        if body.stream:
            return StreamingResponse(music_events(s, body, primer, seed), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        return {"created": int(time.time()), "data": await run_in_threadpool(compose, s, body, primer, seed)}

    # ---- the rest ---------------------------------------------------------------------------------------

    web_folders = web_folders or {}
    for name, folder in web_folders.items():
        from starlette.staticfiles import StaticFiles

        app.mount(f"/web/{name}", StaticFiles(directory=folder), name=f"web-{name}")

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [{"id": n, "object": "model", "created": started, "owned_by": "genlab",
                                            "modality": s.modality, **{f"genlab_{k}": v for k, v in s.kept.info.items()},
                                            **({"genlab_web": f"/web/{n}/"} if n in web_folders else {})}
                                           for n, s in served.items()]}

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": list(served)}

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/", response_class=HTMLResponse)
    async def playground():
        return HTMLResponse(PLAYGROUND.read_text(encoding="utf-8"))

    @app.on_event("shutdown")
    async def _stop():
        for s in served.values():
            if s.scheduler is not None:
                s.scheduler.stop()

    return app


KNOWN_PATHS = {"/v1/models", "/v1/completions", "/v1/chat/completions", "/v1/images/generations",
               "/v1/music/generations", "/health", "/metrics", "/"}


def embed(gen, ids: list[list[int]]):
    """One vector per text: the mean over its tokens of the model's last-layer states (numpy float32)."""
    import torch

    with torch.inference_mode():
        return [gen.model.hidden(torch.tensor([i], device=gen.device))[0].float().mean(0).cpu().numpy() for i in ids]


def compose(s: Served, body, primer: bytes | None, seed: int, on_notes=None) -> list[dict]:
    """A music request's pieces (MIDI, WAV, piano roll), made one request at a time per model."""
    from genlab.errors import GenlabError

    with s.lock, tempfile.TemporaryDirectory(prefix="genlab-serve-") as tmp:
        s.fresh()
        prime = None
        if primer is not None:
            prime = Path(tmp) / "primer.mid"  # our own file: nothing in a request is used as a path
            prime.write_bytes(primer)
        try:
            samples = s.generator.generate(prime, n=body.n, seed=seed, seconds=body.seconds, temperature=body.temperature,
                                           top_k=body.top_k, top_p=body.top_p, on_notes=on_notes)
        except GenlabError as e:
            raise APIError(400, "primer: " + str(e).split(": ", 1)[-1], "primer", "invalid_value") from None
        return [music_files(x.score, Path(tmp) / f"out{i}.mid", s.generator.prime_seconds(prime)) for i, x in enumerate(samples)]


def music_events(s: Served, body, primer: bytes | None, seed: int):
    """The streamed answer of a music request (iterated in a worker thread): `music.notes` events as the notes
    are written (pitch, velocity, start and end in seconds from the piece's start), a `music.completed` event per
    piece with its files, then [DONE]. Generation runs in a thread of its own and hands events over a queue."""
    import queue

    events: queue.Queue = queue.Queue()

    def work():
        try:
            pieces = compose(s, body, primer, seed, on_notes=lambda i, notes: events.put(
                {"type": "music.notes", "index": i, "notes": notes}))
            for i, piece in enumerate(pieces):
                events.put({"type": "music.completed", "index": i, **piece})
        except APIError as e:
            events.put(e.body())
        except Exception:
            log.exception("music generation failed for model %s", s.name)
            events.put(APIError(500, "the model failed while generating", kind="server_error").body())
        finally:
            events.put(None)

    threading.Thread(target=work, name=f"music-{s.name}", daemon=True).start()
    while (event := events.get()) is not None:
        yield f"data: {json.dumps(event)}\n\n"
    yield "data: [DONE]\n\n"


def image_events(s: Served, body, seed: int, label: int | None, prompt: str | None = None):
    """The streamed answer of an image request (run by Starlette in a worker thread): a partial-image event per
    image at about `partial_images` points of the denoising, then a completed event per image, then [DONE]."""
    created = int(time.time())
    with s.lock:
        s.fresh()
        frames = s.generator.trajectory(body.n, seed, label, body.steps, frames=body.partial_images + 1, prompt=prompt)
        for k, (step, total, images) in enumerate(frames):
            kind = "image_generation.completed" if step == total else "image_generation.partial_image"
            for i, image in enumerate(images):
                png = png_of(ImageSample(image, seed, label).image())
                event = {"type": kind, "created_at": created, "image_index": i, "b64_json": base64.b64encode(png).decode(),
                         "genlab_step": step, "genlab_steps": total}
                if step != total:
                    event["partial_image_index"] = k
                yield f"event: {kind}\ndata: {json.dumps(event)}\n\n"
    yield "data: [DONE]\n\n"


def class_of(prompt: str, classes: list[str]) -> int | None:
    """The class a prompt names: a class name or its number ("7", "a seven", "digit 7"); None when it names none
    (a class-conditional model then cycles through its classes)."""
    words = re.findall(r"[a-z0-9]+", prompt.lower())
    for i, name in enumerate(classes):
        names = {name.lower(), str(i)} | ({NUMBER_WORDS[int(name)]} if name.isdigit() and int(name) < 10 else set())
        if names & set(words):
            return i
    return None


def png_of(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def music_files(score, midi: Path, prime_seconds: float | None) -> dict:
    from genlab.audio import write_music
    from genlab.tasks.music import seconds_of

    paths, renderer = write_music(score, midi, prime_seconds)
    b64 = lambda p: base64.b64encode(p.read_bytes()).decode()  # noqa: E731
    return {"midi_b64": b64(paths[0]), "piano_roll_png_b64": b64(paths[1]), "wav_b64": b64(paths[2]),
            "seconds": round(seconds_of(score), 3), "notes": score.note_num(), "audio_renderer": renderer}
