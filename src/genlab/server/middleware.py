"""What stands between a client and the endpoints (plain ASGI classes: Starlette's `http` middleware breaks
client-disconnect detection on streams).

Guard, in order: the Host header must name this server (DNS rebinding), a browser's Origin must be this
page's own or one listed with --allow-origin, API posts must be application/json (a cross-site form or
text/plain post is sent without a preflight), and with a key every path but /health and the playground's
shell needs it. Every refusal is counted in /metrics and is a JSON body in OpenAI's error shape.
"""

from __future__ import annotations

import hmac
import json
from urllib.parse import unquote

from genlab.server.metrics import route_label
from genlab.server.schemas import APIError

OPEN_PATHS = {"/health", "/"}  # the playground's shell asks for the key itself


async def send_error(send, err: APIError) -> None:
    body = json.dumps(err.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), str(v).encode()) for k, v in err.headers.items()]
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """A request body over `limit` bytes gets a 413 before it is read whole. An answer given before its
    request's body was read to the end (a 413, a 404 or a refusal) closes the connection: uvicorn would
    otherwise read and throw away whatever the client went on sending, gigabytes a minute of the server's CPU
    for as long as the client liked."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        unread = b"transfer-encoding" in headers or declared not in (None, b"0")
        too_big = APIError(413, f"the request body is over {self.limit} bytes", code="request_too_large")
        seen = 0

        async def limited():
            nonlocal seen, unread
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                unread = message.get("more_body", False)
                if seen > self.limit:
                    raise too_big
            return message

        async def closing(message):
            if message["type"] == "http.response.start" and unread:
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await send_error(closing, too_big)
        await self.app(scope, limited, closing)


def host_name(host: str) -> str:
    """`host[:port]` or `[v6]:port` -> the name alone, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    def __init__(self, app, key: bytes | None, metrics, hosts: set[str] | None, origins: set[str]):
        self.app, self.key, self.metrics = app, key, metrics
        self.hosts, self.origins = hosts, origins  # hosts None: any Host header (--allow-host '*')

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        label = route_label(scope["path"])

        async def counting(message):
            if message["type"] == "http.response.start":
                self.metrics.requests.labels(label, str(message["status"])).inc()
            await send(message)

        refusal = self.refusal(scope)
        if refusal is not None:
            return await send_error(counting, refusal)
        try:
            await self.app(scope, receive, counting)
        except APIError as err:  # the body limit, raised while a handler reads
            await send_error(counting, err)

    def refusal(self, scope) -> APIError | None:
        headers = {}
        for k, v in scope.get("headers") or []:
            if k in (b"host", b"origin", b"authorization") and k in headers:  # which one counts is a guess
                return APIError(400, f"the request has two {k.decode()} headers", code="invalid_header")
            headers[k] = v.decode("latin-1")
        host = headers.get(b"host", "")
        if self.hosts is not None and host_name(host) not in self.hosts:
            return APIError(403, f"Host {host[:100]!r} is not this server's name; start it with --allow-host NAME "
                                 "to serve under that name", code="host_not_allowed", kind="permission_error")
        origin = headers.get(b"origin")
        if origin is not None and origin not in self.origins and origin.lower() not in (f"http://{host}".lower(),
                                                                                        f"https://{host}".lower()):
            return APIError(403, f"requests from the web page {origin[:100]!r} are refused; start the server with "
                                 "--allow-origin ORIGIN to allow it", code="origin_not_allowed", kind="permission_error")
        path, method = scope["path"], scope["method"]
        if method == "OPTIONS" and origin is not None:
            return None  # an allowed origin's preflight: the CORS middleware answers it
        if self.key is not None and path not in OPEN_PATHS and not hmac.compare_digest(self.token(headers, path), self.key):
            return APIError(401, "a valid API key is needed: Authorization: Bearer KEY", code="invalid_api_key",
                            kind="authentication_error")
        if method == "POST" and path.startswith("/v1/"):
            kind = headers.get(b"content-type", "").split(";")[0].strip().lower()
            if kind != "application/json":
                return APIError(415, f"the request body must be application/json, not {kind[:60] or 'untyped'!r}",
                                code="unsupported_media_type")
        return None

    @staticmethod
    def token(headers: dict, path: str) -> bytes:
        given = headers.get(b"authorization", "")
        if given[:7].lower() == "bearer ":
            return given[7:].strip().encode("latin-1")
        if path.startswith("/web/"):  # scripts and model files the playground loads by URL carry the key as a cookie
            for part in headers.get(b"cookie", "").split(";"):
                name, _, value = part.strip().partition("=")
                if name == "genlab_key":
                    return unquote(value).encode("utf-8", "replace")
        return b""
