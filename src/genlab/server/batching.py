"""Continuous batching: one decode loop per served sequence model, on the step engine.

A request (n rows) is queued; between two engine steps the loop admits queued requests while fewer
than `max_batch` rows run, cancels what clients gave up, and then advances every running row by one
token (genlab.sampling.engine: rows at different positions share one batched forward where the model
has slots). Each event is handed to its request's asyncio queue on the server's event loop, so a
handler streams tokens the moment they exist. Past `max_queue` rows waiting or running, `submit`
refuses (the server answers 429, with a Retry-After from how fast rows have been leaving).

Other work on the model (scoring a prompt, embeddings) runs in the same loop, one piece between two
decode steps: it counts against the queue, never runs beside decoding on another thread, and stops
when its client leaves.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

from genlab.sampling.engine import Request

log = logging.getLogger("genlab.server")


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__(retry_after)
        self.retry_after = retry_after


class QueueRoom:
    """How many rows a model's queue holds (queued or running), and how fast they leave (for Retry-After)."""

    def __init__(self, max_queue: float, max_batch: int = 1):
        self.max_queue, self.max_batch = max_queue, max_batch  # max_batch rows leave together
        self.outstanding = 0
        self.row_seconds = 0.5  # a running average of how long a row stays
        self.lock = threading.Lock()

    def take(self, cost: int) -> None:
        """Room for `cost` more rows, or QueueFull with the seconds until there should be."""
        with self.lock:
            if self.outstanding + cost > self.max_queue:
                over = self.outstanding + cost - self.max_queue
                raise QueueFull(max(1, math.ceil(self.row_seconds * over / self.max_batch)))
            self.outstanding += cost

    def give(self, rows: int) -> None:
        with self.lock:
            self.outstanding -= rows

    def row_left(self, seconds: float) -> None:
        self.row_seconds = 0.9 * self.row_seconds + 0.1 * seconds


class LoopOutbox:
    """Events to their jobs' asyncio queues, each turn's with one wake-up of the server's event loop."""

    def __init__(self):
        self.items: list[tuple[Job, object]] = []

    def put(self, job: Job, item) -> None:
        self.items.append((job, item))

    def flush(self) -> None:
        if not self.items:
            return
        items, self.items = self.items, []

        def put():
            for job, item in items:
                job.events.put_nowait(item)

        try:
            items[0][0].loop.call_soon_threadsafe(put)  # every job of a server shares its one loop
        except RuntimeError:  # the server's loop is gone (shutting down)
            pass


def series_of(metrics, name: str) -> SimpleNamespace:
    """A model's Prometheus series, looked up once (a labels() lookup per decode step costs more than the
    step's bookkeeping)."""
    return SimpleNamespace(**{k: getattr(metrics, k).labels(name) for k in SERIES})


SERIES = ("queue_depth", "active", "batch_size", "tokens", "ttft")


@dataclass(eq=False)
class Job:
    """One client request: its rows, and where their events go."""

    requests: list[Request]
    loop: asyncio.AbstractEventLoop | None
    work: tuple | None = None  # instead of rows: (generator method, args), a generator that yields between pieces
    events: asyncio.Queue = field(default_factory=asyncio.Queue)  # (row, Event) or (None, error message)
    created: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    slots: dict[int, int] = field(default_factory=dict)  # engine slot -> row
    ident: int = 0  # its name across a process boundary (server/engine_process.py)

    @property
    def cost(self) -> int:
        """Rows it holds in the queue."""
        return len(self.requests) if self.work is None else 1


class Scheduler:
    """The decode loop of one model, on a thread of its own. What it reports goes through `outbox` (put, flush
    at the end of each turn), `room` (rows that left the queue) and `series` (Prometheus): in the server's
    process straight to the event loop, in an engine process (server/engine_process.py) down a pipe."""

    def __init__(self, generator, name: str, max_batch: int, room: QueueRoom, series, outbox=None, kept=None):
        self.generator, self.name = generator, name
        self.kept = kept  # server/reload.py: new weights are swapped in between requests
        self.swap_pending = False
        self.max_batch, self.room, self.series = max_batch, room, series
        self.outbox = outbox or LoopOutbox()
        self.engine = generator.engine(continuous=True)
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.cancelled: queue.SimpleQueue = queue.SimpleQueue()
        self.waiting: collections.deque[Job] = collections.deque()
        self.working: collections.deque[Job] = collections.deque()  # work jobs, a piece each per loop turn
        self.running: dict[int, Job] = {}  # engine slot -> its job
        self.wake = threading.Event()
        self.stopping = False
        self.aborting = False
        self.thread = threading.Thread(target=self._loop, name=f"decode-{name}", daemon=True)
        self.thread.start()

    # ---- called from the server's event loop -------------------------------------------------------

    def submit(self, requests: list[Request], work: tuple | None = None) -> Job:
        """Queue rows to decode (or a piece of `work`); QueueFull when the queue has no room now."""
        job = Job(requests, asyncio.get_running_loop(), work)
        self.room.take(job.cost)
        self.enqueue(job)
        return job

    def enqueue(self, job: Job) -> None:
        """A job whose room is already taken."""
        self.inbox.put(job)
        self.wake.set()

    def cancel(self, job: Job) -> None:
        """The client went away: its rows leave at the next step."""
        self.cancelled.put(job)
        self.wake.set()

    def abort(self) -> None:
        """End every job, queued or running, with a ("shutdown", None) event."""
        self.aborting = True
        self.wake.set()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()
        self.thread.join(timeout=5)

    # ---- the decode loop (its own thread) -----------------------------------------------------------

    def _loop(self) -> None:
        while not self.stopping:
            try:
                self._turn()
            except Exception:  # a bug must not take the server down: fail what runs, start afresh
                log.exception("the decode loop failed for model %s", self.name)
                for job in {id(j): j for j in self.running.values()}.values():
                    self.outbox.put(job, (None, "the model failed while generating"))
                self._forget(list(self.running))
                self.outbox.flush()
                self.engine = self.generator.engine(continuous=True)

    def _turn(self) -> None:
        """Admit, do a piece of work, then advance every running row by one token."""
        if self.aborting:
            self._end_all()
        # Looked at when requests arrive (between requests), not at every decode step.
        if self.kept is not None and not self.swap_pending and not self.inbox.empty() and self.kept.changed():
            self.swap_pending = True  # admit nothing new; the rows in flight finish on the old weights
        if self.swap_pending and not self.running:
            self._swap()
        self._admit()
        self.series.queue_depth.set(sum(j.cost for j in self.waiting))
        self.series.active.set(len(self.running))
        if self.working:
            self._work()
        if not self.running:
            self.outbox.flush()
            if not self.working:
                self.wake.wait()
                self.wake.clear()
            return
        events = self.engine.step()
        self.series.batch_size.observe(len(events))
        self.series.tokens.inc(len(events))
        for event in events:
            job = self.running.get(event.slot)
            if job is None:
                continue
            if job.first_token is None:
                job.first_token = time.perf_counter()
                self.series.ttft.observe(job.first_token - job.created)
            self.outbox.put(job, (job.slots[event.slot], event))
            if event.finish is not None:
                self.room.row_left(time.perf_counter() - job.created)
                self._forget([event.slot])
        self.outbox.flush()

    def _admit(self) -> None:
        # New jobs first, then cancellations: a job cancelled before its first turn is still in the inbox, so
        # looking for it in the queues first found nothing, and it was then admitted and decoded for nobody.
        while not self.inbox.empty():  # (empty() first: no exception per step)
            job = self.inbox.get_nowait()
            (self.waiting if job.work is None else self.working).append(job)
        while not self.cancelled.empty():  # clients that gave up
            job = self.cancelled.get_nowait()
            if job in self.waiting:
                self.waiting.remove(job)
                self._done_rows(job.cost)
            if job in self.working:
                self.working.remove(job)
                if not isinstance(job.work, tuple):  # begun
                    job.work.close()
                self._done_rows(job.cost)
            self._forget([slot for slot, j in self.running.items() if j is job])
        while self.waiting and len(self.running) < self.max_batch and not self.swap_pending:
            job = self.waiting.popleft()
            for row, request in enumerate(job.requests):
                slot = self.engine.add(request)
                job.slots[slot] = row
                self.running[slot] = job

    def _end_all(self) -> None:
        self._admit()  # take in what the inbox holds, so it is ended too
        for job in {*self.running.values(), *self.waiting, *self.working}:
            self.outbox.put(job, ("shutdown", None))
        self._forget(list(self.running))
        self._done_rows(sum(j.cost for j in self.waiting) + sum(j.cost for j in self.working))
        self.waiting.clear()
        self.working.clear()

    def _work(self) -> None:
        """One piece of the oldest work job; it goes to the back of the line, or is answered when done."""
        job = self.working.popleft()
        try:
            if isinstance(job.work, tuple):  # its turn has come: begin it (a generator of the model's)
                method, args = job.work
                job.work = getattr(self.generator, method)(*args)
            next(job.work)
        except StopIteration as done:
            self.outbox.put(job, (0, done.value))
            self._done_rows(job.cost)
            return
        except Exception:
            log.exception("work failed for model %s", self.name)
            self.outbox.put(job, (None, "the model failed while scoring"))
            self._done_rows(job.cost)
            return
        self.working.append(job)

    def _swap(self) -> None:
        try:
            self.kept.reload()
        except Exception:  # a bug: keep serving (a file that cannot be loaded is KeptWeights.reload's to say)
            log.exception("could not reload the weights of model %s", self.name)
        self.engine = self.generator.engine(continuous=True)  # no cache of the old weights survives
        self.swap_pending = False

    def _forget(self, slots: list[int]) -> None:
        for slot in slots:
            if self.running.pop(slot, None) is not None:
                self.engine.release(slot)
                self._done_rows(1)

    def _done_rows(self, n: int) -> None:
        self.room.give(n)
