"""What one connection may hold: room when connections run out, and a bound on a request's head.

uvicorn answers 503 to every request while `limit_concurrency` connections (or requests) are open, and keeps a
connection for as long as its client likes, however slowly it sends. A thousand sockets that send nothing,
half a request's head, or a body a byte at a time shut everyone else out for good, `/health` included. Here
a new connection at the limit closes the one that has waited longest on its client (idle, or still sending
its request), so what holds the room is work the server is doing.

uvicorn's httptools protocol also takes a request head of any size: one client sending header lines for eight
seconds grew the server by 1.8 GB. Past MAX_HEAD_BYTES the request gets a 431 and its connection is closed.

And it parses every request a client pipelines (sends before reading the answers), each held as a request
cycle until its turn: 880 KB of pipelined GETs on each of five connections that never read grew the server by
240 MB. Past MAX_PIPELINED requests ahead of their answers it reads no more, answers those it took, and closes.

Nor does it bound how long an answer may wait on a client that does not read it: a thousand clients that ask for
a long stream and read none of it hold every connection for good. A client that leaves its answer unread for
WRITE_STALL_S (the transport's buffer full, above its high-water mark, all that time) is dropped, and its work
stops as when a client leaves.
"""

from __future__ import annotations

import time

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024  # the request line and headers; nginx allows 32 KiB by default, Node.js 16 KiB
MAX_PIPELINED = 32  # requests a client may send ahead of its answers (browsers and HTTP libraries send none)
WRITE_STALL_S = 30.0  # a client that leaves its answer unread this long is dropped (its work stops)


class HeadTooLarge(Exception):
    pass


class PipelineTooDeep(Exception):
    pass


class YieldingHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol; at the connection limit, the connection that has waited longest on its
    client is closed. One whose whole request has come is never closed for room: it is being answered."""

    def connection_made(self, transport) -> None:  # noqa: D102 - asyncio's
        self.waiting_since = time.monotonic()  # None while its request is whole and being answered
        self.head_bytes = 0  # bytes of the request head being read; None once the head is whole
        self.too_deep = False  # pipelined past MAX_PIPELINED
        self.stalled = None  # the timer that drops a client that stopped reading its answer
        limit = self.limit_concurrency
        if limit is not None and len(self.connections) >= limit - 1:  # leave room for this one's request
            waiting = [c for c in self.connections if isinstance(c, YieldingHttpProtocol) and c.waiting_since is not None]
            if waiting:
                oldest = min(waiting, key=lambda c: c.waiting_since)
                self.connections.discard(oldest)  # now, not when its connection_lost runs: the count is checked next
                oldest.transport.close()  # a request it was sending hears a disconnect
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:  # noqa: D102 - asyncio's
        if self.too_deep:  # read before reading paused: the parser has stopped, and the connection will close
            return
        # The parser keeps a header it is still reading to itself, so the bytes are counted as they come. A piece
        # that ends the head and begins the body counts whole here; the head's own size is checked when it ends.
        if self.head_bytes is not None:
            self.head_bytes += len(data)
        super().data_received(data)
        if self.head_bytes is not None and self.head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self.send_431_response()

    def on_message_begin(self) -> None:
        self.head_bytes = 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        if len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers) > MAX_HEAD_BYTES:
            self.head_bytes = MAX_HEAD_BYTES + 1
            raise HeadTooLarge  # the parser stops; uvicorn answers a parse error with send_400_response
        self.head_bytes = None
        if self.cycle is not None and not self.cycle.response_complete and len(self.pipeline) >= MAX_PIPELINED:
            self.too_deep = True  # the parser stops here; the requests taken are answered, then the connection closes
            raise PipelineTooDeep
        super().on_headers_complete()

    def pause_writing(self) -> None:  # noqa: D102 - asyncio's: the answer waits on the client to read
        super().pause_writing()
        self.stalled = self.loop.call_later(WRITE_STALL_S, self.transport.abort)  # close() would wait to flush

    def resume_writing(self) -> None:  # noqa: D102 - asyncio's
        super().resume_writing()
        if self.stalled is not None:
            self.stalled.cancel()
            self.stalled = None

    def connection_lost(self, exc) -> None:  # noqa: D102 - asyncio's
        if self.stalled is not None:
            self.stalled.cancel()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        if self.too_deep:  # answers are owed first: nothing may be written now
            self.flow.pause_reading()
        elif self.head_bytes is not None and self.head_bytes > MAX_HEAD_BYTES:
            self.send_431_response()
        else:
            super().send_400_response(msg)

    def send_431_response(self) -> None:
        body = f"request head larger than {MAX_HEAD_BYTES} bytes".encode()
        self.transport.write(STATUS_LINE[431] + b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
                             + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        self.transport.close()

    def on_message_complete(self) -> None:
        self.waiting_since = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.too_deep:
            if self.pipeline or not self.cycle.response_complete:
                self.flow.pause_reading()  # uvicorn resumed it for the next request
            else:
                self.transport.close()  # every request taken is answered
            return
        if self.cycle is None or self.cycle.response_complete:  # not a pipelined request begun just now
            self.waiting_since = time.monotonic()  # a keep-alive connection waits for its next request
