"""Room for requests when connections run out: idle ones make way.

uvicorn answers 503 to every request while `limit_concurrency` connections are open, and keeps a connection that
never sends a request for as long as its client likes. A thousand idle sockets (or ones trickling a request's
head a byte at a time) shut everyone else out for good, `/health` included. Here a new connection at the limit
closes the connection that has waited longest without a request in progress, so what holds the room is work.
"""

from __future__ import annotations

import time

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class YieldingHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol; at the connection limit, the longest-waiting idle connection is closed."""

    def connection_made(self, transport) -> None:  # noqa: D102 - asyncio's
        self.idle_since = time.monotonic()
        limit = self.limit_concurrency
        if limit is not None and len(self.connections) >= limit - 1:  # leave room for this one's request
            idle = [c for c in self.connections if isinstance(c, YieldingHttpProtocol) and c.idle_since is not None]
            if idle:
                oldest = min(idle, key=lambda c: c.idle_since)
                self.connections.discard(oldest)  # now, not when its connection_lost runs: the count is checked next
                oldest.transport.close()
        super().connection_made(transport)

    def on_headers_complete(self) -> None:
        self.idle_since = None
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.idle_since = time.monotonic()  # a keep-alive connection waits for its next request
