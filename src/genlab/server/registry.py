"""The served models: each one's generator, the machinery in front of it, and how /v1/models shows it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from genlab.server.batching import QueueFull, QueueRoom, Scheduler, series_of
from genlab.server.disconnects import ClientGone, watched
from genlab.server.engine_process import EngineProcess
from genlab.server.reload import KeptWeights
from genlab.server.schemas import APIError
from genlab.server.structured import PatternCache
from genlab.server.worker import Busy, ModelWorker


@dataclass
class Served:
    name: str
    generator: object
    kept: KeptWeights  # the run's weights file, swapped in when training improves it
    scheduler: Scheduler | EngineProcess | None = None  # text and code: continuous batching (and prompt scoring, embeddings)
    worker: ModelWorker | None = None  # images, music, clip: one request at a time on a thread of the model's own
    patterns: PatternCache | None = None  # structured output, compiled per model
    web: Path | None = None  # a `--format web` export of it, served under /web/NAME/

    @property
    def modality(self) -> str:
        return self.generator.modality

    def fresh(self) -> None:
        """On the worker's thread, before a request: take new weights, if training wrote any."""
        if self.kept.changed():
            self.kept.reload()

    def submit(self, rows, work=None):
        """Rows (or a piece of work) into the model's queue, or a 429 whose Retry-After comes from the queue."""
        try:
            return self.scheduler.submit(rows, work)
        except QueueFull as full:
            raise busy(self.name, full.retry_after) from None

    async def run(self, request, fn, *args):
        """`fn(*args)` on the model's own thread (after taking new weights, if any), or a 429 when too many
        requests wait for it. If the client leaves (ClientGone), a job still waiting never runs and one running
        stops at its sampling loop's next step (server/worker.py)."""
        def fresh_then():
            self.fresh()
            return fn(*args)

        try:
            future = self.worker.start(fresh_then)
        except Busy:
            raise busy(self.name, 1) from None
        async with watched(request, future.cancel):  # the worker skips or stops a cancelled job
            try:
                return await future
            except asyncio.CancelledError:
                if asyncio.current_task().cancelling():  # this request itself is cancelled (the server stops)
                    raise
                raise ClientGone from None

    def streaming(self, work):
        """What `work(emit)` emits on the model's own thread, as an async iterator (server/worker.py)."""
        def fresh_then(emit):
            self.fresh()
            work(emit)

        try:
            return self.worker.streaming(fresh_then)
        except Busy:
            raise busy(self.name, 1) from None


def busy(name: str, retry_after: int) -> APIError:
    return APIError(429, f"model {name!r} is busy (the queue is full); retry in {retry_after} s", code="queue_full",
                    kind="rate_limit_error", headers={"Retry-After": str(retry_after)})


class Endpoint:
    """One endpoint family: `create(request, body)` answers a request to it from the served models."""

    def __init__(self, registry: "Registry"):
        self.registry = registry


class Registry:
    def __init__(self, models: dict[str, object], metrics, max_batch: int, max_queue: int, constraint_timeout: float,
                 constraint_memory_mb: int, web_folders: dict[str, Path], engine_runs: dict[str, tuple[str, str]]):
        """engine_runs: name -> (run, device) of the text models decoded in an engine process of their own."""
        self.started, self.max_queue = int(time.time()), max_queue
        self.served: dict[str, Served] = {}
        for name, gen in models.items():
            s = Served(name, gen, KeptWeights(gen), web=web_folders.get(name))
            if gen.modality in ("text", "code"):
                s.scheduler = (EngineProcess(*engine_runs[name], name, max_batch, max_queue, metrics, torch.get_num_threads())
                               if name in engine_runs else
                               Scheduler(gen, name, max_batch, QueueRoom(max_queue, max_batch), series_of(metrics, name), kept=s.kept))
                s.patterns = PatternCache(name, gen, constraint_timeout, constraint_memory_mb)
            else:
                s.worker = ModelWorker(name, max_waiting=max(1, max_queue // 16))
            self.served[name] = s

    def __iter__(self):
        return iter(self.served.values())

    def lookup(self, name: str, kinds: tuple[str, ...]) -> Served:
        s = self.served.get(name)
        if s is None:
            raise APIError(404, f"model {name!r} is not served here (GET /v1/models lists them)", "model", "model_not_found")
        if s.modality not in kinds:
            raise APIError(400, f"model {name!r} is a {s.modality} model; this endpoint serves {' and '.join(kinds)} models",
                           "model", "wrong_model_kind")
        return s

    def describe(self, s: Served) -> dict:
        """A model as OpenAI lists it, with genlab's own fields (its modality, step and score, its web export)."""
        if isinstance(s.scheduler, EngineProcess) and s.kept.changed():  # its engine process reloads the weights
            s.kept.note()
        return {"id": s.name, "object": "model", "created": self.started, "owned_by": "genlab", "modality": s.modality,
                **{f"genlab_{k}": v for k, v in s.kept.info.items()}, **({"genlab_web": f"/web/{s.name}/"} if s.web else {})}

    def abort(self) -> None:
        """End every request in flight (the server is stopping and its drain time is up)."""
        for s in self:
            if s.scheduler is not None:
                s.scheduler.abort()

    def stop(self) -> None:
        for s in self:
            if s.scheduler is not None:
                s.scheduler.stop()
