"""Server-Sent Events as OpenAI streams them: `data: JSON` blocks, an optional event name, then [DONE]."""

from __future__ import annotations

import json

from fastapi.responses import StreamingResponse

DONE = "data: [DONE]\n\n"


def event(data: dict, name: str | None = None) -> str:
    return (f"event: {name}\n" if name else "") + "data: " + json.dumps(data) + "\n\n"


def response(events) -> StreamingResponse:
    """A streamed answer of `events` (an async iterator of formatted events)."""
    return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
