"""Room for requests when connections run out: connections waiting on their clients make way.

uvicorn answers 503 to every request while `limit_concurrency` connections (or requests) are open, and keeps a
connection for as long as its client likes, however slowly it sends. A thousand sockets that send nothing,
half a request's head, or a body a byte at a time shut everyone else out for good, `/health` included. Here
a new connection at the limit closes the one that has waited longest on its client (idle, or still sending
its request), so what holds the room is work the server is doing.
"""

from __future__ import annotations

import time

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class YieldingHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol; at the connection limit, the connection that has waited longest on its
    client is closed. One whose whole request has come is never closed for room: it is being answered."""

    def connection_made(self, transport) -> None:  # noqa: D102 - asyncio's
        self.waiting_since = time.monotonic()  # None while its request is whole and being answered
        limit = self.limit_concurrency
        if limit is not None and len(self.connections) >= limit - 1:  # leave room for this one's request
            waiting = [c for c in self.connections if isinstance(c, YieldingHttpProtocol) and c.waiting_since is not None]
            if waiting:
                oldest = min(waiting, key=lambda c: c.waiting_since)
                self.connections.discard(oldest)  # now, not when its connection_lost runs: the count is checked next
                oldest.transport.close()  # a request it was sending hears a disconnect
        super().connection_made(transport)

    def on_message_complete(self) -> None:
        self.waiting_since = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.cycle is None or self.cycle.response_complete:  # not a pipelined request begun just now
            self.waiting_since = time.monotonic()  # a keep-alive connection waits for its next request
