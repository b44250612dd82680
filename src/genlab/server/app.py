"""The HTTP server, assembled: OpenAI's API over genlab's generators (FastAPI), a Prometheus /metrics and a
playground page. One module per endpoint family does the work:

    GET  /v1/models, /v1/models/{id}  models.py        the served models, each named after its run folder (or --name)
    POST /v1/completions              completions.py   text and code runs, hf: models; streamed with stream=true
    POST /v1/chat/completions         chat.py          the same through a chat template (docs/serve.md)
    POST /v1/embeddings               embeddings.py    text, code and clip runs
    POST /v1/images/generations       images.py        image runs: b64_json PNGs
    POST /v1/music/generations        music.py         music runs: MIDI, WAV and piano roll in base64
    GET  /health, /metrics, /         here             liveness, Prometheus text, the playground

Text is decoded by one Scheduler per model (continuous batching, batching.py), in a process of its own under
`genlab serve` (engine_process.py); images, music and clip
run one request at a time per model on a thread of its own (worker.py). Middleware (middleware.py)
guards hosts, origins, content types, the key and body sizes. Every error is a JSON body in OpenAI's
shape; nothing a client sends is ever used as a path. docs/security.md says what it defends against.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.staticfiles import StaticFiles

from genlab.server.chat import Chat
from genlab.server.completions import Completions
from genlab.server.embeddings import Embeddings
from genlab.server.images import Images
from genlab.server.metrics import Metrics
from genlab.server.middleware import BodyLimit, Guard
from genlab.server.models import Models
from genlab.server.music import Music
from genlab.server.registry import Registry
from genlab.server.schemas import APIError, openapi_bodies
from genlab.server.disconnects import ClientGone

log = logging.getLogger("genlab.server")
PLAYGROUND = Path(__file__).with_name("playground.html")
LOCAL_NAMES = {"localhost", "127.0.0.1", "::1"}


async def json_body(request: Request):
    """The request's JSON, or a 400 (not JSON, NaN or Infinity, nested past what a request needs)."""
    def no_constants(name):
        raise ValueError(name)

    try:
        return json.loads(await request.body(), parse_constant=no_constants)
    except (ValueError, UnicodeDecodeError):
        raise APIError(400, "the request body is not valid JSON") from None
    except RecursionError:
        raise APIError(400, "the request body nests too deeply") from None


def create_app(models: dict[str, object], api_key: str | None = None, max_batch: int = 64, max_queue: int = 256,
               allow_origins: list[str] | None = None, allow_hosts: list[str] | None = None, bound_host: str = "127.0.0.1",
               max_body_bytes: int = 4 << 20, web_folders: dict[str, Path] | None = None, constraint_timeout: float = 2.0,
               constraint_memory_mb: int = 1024, engine_runs: dict[str, tuple[str, str]] | None = None):
    """A FastAPI app serving `models` (name -> Generator from genlab.load); `web_folders` (name -> a `--format web`
    export of that model) are served under /web/NAME/ for the playground's in-browser run; text models named in
    `engine_runs` (name -> (run, device)) decode in an engine process of their own (engine_process.py). Requests must name
    this server in their Host header (localhost, `bound_host` or one of `allow_hosts`; '*' allows any)."""
    # Long on purpose: every middleware, error handler and route in the order a request meets them.
    metrics = Metrics()
    web_folders = web_folders or {}
    registry = Registry(models, metrics, max_batch, max_queue, constraint_timeout, constraint_memory_mb, web_folders,
                        engine_runs or {})
    app = FastAPI(title="genlab", version="1", docs_url=None, redoc_url=None)
    app.state.registry, app.state.metrics = registry, metrics

    @app.exception_handler(APIError)
    async def _api_error(request, err: APIError):
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(HTTPException)
    async def _http_error(request, err: HTTPException):  # 404, 405 from routing: OpenAI's shape too
        message = {404: f"no such path: {request.method} {request.url.path[:200]}",
                   405: f"{request.method} is not allowed on {request.url.path[:200]}"}.get(err.status_code, str(err.detail))
        return JSONResponse(APIError(err.status_code, message).body(), status_code=err.status_code, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, err: RequestValidationError):  # a path parameter FastAPI itself checks
        first = (err.errors() or [{}])[0]
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return JSONResponse(APIError(400, f"{param}: {first.get('msg', 'invalid')}", param, "invalid_value").body(),
                            status_code=400)

    @app.exception_handler(ClientGone)
    @app.exception_handler(ClientDisconnect)  # left while its body was read: not an internal error to log
    async def _gone(request, err):  # nobody reads it: the client left and its work was dropped
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def _internal(request, err: Exception):  # never a stack trace in a response; the log has it
        log.exception("internal error on %s", request.url.path)
        return JSONResponse(APIError(500, "internal error", kind="server_error").body(), status_code=500)

    hosts = None if "*" in (allow_hosts or []) else LOCAL_NAMES | {bound_host.lower().strip("[]")} | {h.lower() for h in allow_hosts or []}
    if allow_origins:
        app.add_middleware(CORSMiddleware, allow_origins=allow_origins, allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"], expose_headers=["retry-after"])
    app.add_middleware(Guard, key=api_key.encode() if api_key else None, metrics=metrics, hosts=hosts,
                       origins=set(allow_origins or []))
    app.add_middleware(BodyLimit, limit=max_body_bytes)

    endpoints = {"/v1/completions": Completions(registry), "/v1/chat/completions": Chat(registry),
                 "/v1/embeddings": Embeddings(registry), "/v1/images/generations": Images(registry),
                 "/v1/music/generations": Music(registry)}
    for path, endpoint in endpoints.items():
        app.add_api_route(path, route(endpoint), methods=["POST"], openapi_extra=openapi_bodies(path, [s.name for s in registry]))
    models_endpoint = Models(registry)
    app.add_api_route("/v1/models", models_endpoint.list, methods=["GET"])
    app.add_api_route("/v1/models/{model}", models_endpoint.retrieve, methods=["GET"])
    for s in registry:
        if s.web is not None:
            app.mount(f"/web/{s.name}", StaticFiles(directory=s.web), name=f"web-{s.name}")

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": [s.name for s in registry]}

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/", response_class=HTMLResponse)
    async def playground():
        return HTMLResponse(PLAYGROUND.read_text(encoding="utf-8"))

    app.router.on_shutdown.append(registry.stop)
    return app


def route(endpoint):
    async def create(request: Request):
        return await endpoint.create(request, await json_body(request))

    return create
