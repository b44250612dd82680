"""GET /v1/models and /v1/models/{id}: the served models, each named after its run folder (or --name)."""

from __future__ import annotations

from genlab.server.registry import Endpoint
from genlab.server.schemas import APIError


class Models(Endpoint):
    def list(self) -> dict:
        return {"object": "list", "data": [self.registry.describe(s) for s in self.registry]}

    def retrieve(self, model: str) -> dict:
        s = self.registry.served.get(model)
        if s is None:
            raise APIError(404, f"model {model!r} is not served here (GET /v1/models lists them)", "model", "model_not_found")
        return self.registry.describe(s)
