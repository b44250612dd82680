"""A client that leaves: heard at once (the ASGI server says so; nothing polls), and its work dropped."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import Request


class ClientGone(Exception):
    pass


@contextlib.asynccontextmanager
async def watched(request: Request, on_leave):
    """Calls `on_leave()` as soon as the client disconnects."""

    async def watch():
        while (await request.receive())["type"] != "http.disconnect":
            pass
        on_leave()

    task = asyncio.create_task(watch())
    try:
        yield
    finally:
        task.cancel()
