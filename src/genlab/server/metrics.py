"""The Prometheus series /metrics shows (one registry per app, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Request paths counted by name; any other is counted as "other" (a client cannot grow the series).
ROUTES = {"/v1/models", "/v1/completions", "/v1/chat/completions", "/v1/embeddings", "/v1/images/generations",
          "/v1/music/generations", "/health", "/metrics", "/"}


def route_label(path: str) -> str:
    if path in ROUTES:
        return path
    if path.startswith("/v1/models/"):
        return "/v1/models/{model}"
    if path.startswith("/web/"):
        return "/web/"
    return "other"


class Metrics:
    def __init__(self):
        self.registry = r = CollectorRegistry()
        self.requests = Counter("genlab_requests", "HTTP requests by path and status", ["path", "status"], registry=r)
        self.tokens = Counter("genlab_generated_tokens", "Tokens generated", ["model"], registry=r)
        self.queue_depth = Gauge("genlab_queue_depth", "Rows waiting for a place in the batch", ["model"], registry=r)
        self.active = Gauge("genlab_active_sequences", "Rows being decoded", ["model"], registry=r)
        self.batch_size = Histogram("genlab_batch_size", "Rows advanced per decode step", ["model"], registry=r,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.ttft = Histogram("genlab_time_to_first_token_seconds", "From request to its first token", ["model"], registry=r,
                              buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

    def render(self) -> bytes:
        return generate_latest(self.registry)
