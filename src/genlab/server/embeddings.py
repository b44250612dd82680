"""POST /v1/embeddings: text and code runs (the mean of the last layer's states over the input's tokens, scored
in the model's queue) and clip runs (the caption tower's unit vectors, the space its images share)."""

from __future__ import annotations

import base64

from fastapi import Request

from genlab.core.errors import GenlabError
from genlab.server.disconnects import watched
from genlab.server.registry import Endpoint
from genlab.server.schemas import APIError, EmbeddingRequest, parse
from genlab.server.text import leave, result


class Embeddings(Endpoint):
    async def create(self, request: Request, body: dict):
        body = parse(EmbeddingRequest, body)
        s = self.registry.lookup(body.model, ("text", "code", "clip"))
        gen = s.generator
        if gen.modality == "clip":
            vectors = await s.run(request, gen.embed_texts, list(body.input))
            tokens = sum(len(text.encode("utf-8")) for text in body.input)  # bytes are its tokens
        elif not gen.can_embed:
            raise APIError(400, f"model {body.model!r} has no hidden states to embed with", "model", "wrong_model_kind")
        else:
            try:
                ids = [gen.tokenizer.encode(text) for text in body.input]
            except GenlabError as e:
                raise APIError(400, f"input: {e}", "input", "invalid_value") from None
            if any(not i for i in ids):
                raise APIError(400, "input: a text has no tokens for this model", "input", "invalid_value")
            limit = gen.max_context
            ids = [i[:limit] if limit else i for i in ids]  # the first window of a longer text
            job = s.submit([], work=("embed", (ids,)))
            async with watched(request, lambda: leave(s, job)):
                vectors = await result(job)
            tokens = sum(map(len, ids))
        data = []
        for i, v in enumerate(vectors):
            value = base64.b64encode(v.astype("<f4").tobytes()).decode() if body.encoding_format == "base64" else v.tolist()
            data.append({"object": "embedding", "index": i, "embedding": value})
        return {"object": "list", "data": data, "model": body.model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
