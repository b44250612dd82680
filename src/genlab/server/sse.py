"""Server-Sent Events as OpenAI streams them: `data: JSON` blocks, an optional event name, then [DONE]."""

from __future__ import annotations

import json
import logging

from fastapi.responses import StreamingResponse

from genlab.server.schemas import APIError

DONE = "data: [DONE]\n\n"


def event(data: dict, name: str | None = None) -> str:
    return (f"event: {name}\n" if name else "") + "data: " + json.dumps(data) + "\n\n"


def failure(error: Exception, model: str) -> dict:
    """A streamed error event: the request's own error, or a server error that says nothing more (the log has it)."""
    if isinstance(error, APIError):
        return error.body()
    logging.getLogger("genlab.server").error("model %s failed while generating", model, exc_info=error)
    return APIError(500, "the model failed while generating", kind="server_error").body()


def response(events) -> StreamingResponse:
    """A streamed answer of `events` (an async iterator of formatted events)."""
    return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
