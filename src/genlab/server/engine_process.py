"""The decode loop in a process of its own, as vLLM's engine core: tokens cross a pipe, not the interpreter lock.

In one process the event loop (HTTP, JSON, SSE: ~150 µs a token) and the decode thread take turns on one
interpreter lock, so a lone client streams at about 0.6x of what the engine decodes alone. Here the same
Scheduler (batching.py) runs in a child process that loads the run itself; the server's side keeps the queue's
accounting (429s answer at once) and the asyncio queues its handlers read.

    server process                                   engine process
    EngineProcess.submit(rows | work) --- pipe --->  reader thread -> Scheduler.enqueue
    jobs[ident].events  <---------------- pipe ----  each turn: [(ident, item)], rows freed, metrics

What crosses: requests (prompt ids, sampling fields, seed, stops) with their constraint as the expression it
was compiled from (a compiled automaton is sent once, a lazy matcher is rebuilt there in a millisecond),
work as (generator method, args), and per turn the events, the rows that left the queue and the Prometheus
observations. The child ignores SIGINT and SIGTERM (the server drains and then stops it) and exits when the
pipe closes, so it never outlives the server. Should it die, its jobs end with an error and a new one starts.

The pipe stays blocking while the event loop watches it (`watch`): uvloop makes a watched descriptor
non-blocking, and then a report the engine was still writing made recv() raise, so a live engine was taken
for dead and replaced. Blocking, recv() waits the moment it takes the engine to finish the report it began;
the engine's reader thread only reads, so a send from the server never waits on the server reading in turn.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import logging
import multiprocessing
import os
import signal
import threading
import weakref
from collections import OrderedDict
from types import SimpleNamespace

import torch

from genlab.api import load
from genlab.sampling.constraints import LazyPattern
from genlab.server.batching import SERIES, Job, QueueRoom, Scheduler, series_of
from genlab.server.reload import KeptWeights

log = logging.getLogger("genlab.server")

PATTERNS_HELD = 32  # compiled patterns the engine process keeps (the server decides which, and says which go)


class EngineProcess:
    """The server's side of an engine process: the surface of a Scheduler (submit, cancel, abort, stop)."""

    def __init__(self, run: str, device: str, name: str, max_batch: int, max_queue: int, metrics, threads: int):
        self.args = (run, device, name, max_batch, threads)
        self.name, self.room = name, QueueRoom(max_queue, max_batch)
        self.series = series_of(metrics, name)
        self.jobs: weakref.WeakValueDictionary[int, Job] = weakref.WeakValueDictionary()
        self.next_ident = 0
        self.sent: OrderedDict[str, None] = OrderedDict()  # patterns the engine process holds
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sending = threading.Lock()  # the drain timer's abort may send while the event loop does
        self.stopping = False
        self.active_rows = 0  # rows being decoded, as the engine process last said
        self._start()
        # A server that exits without stopping it (SIGTERM before uvicorn took the signals over) would wait
        # forever at exit: multiprocessing joins the engine, which ignores SIGTERM and waits for its pipe to close.
        atexit.register(self.stop)

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no threads or locks copied mid-use
        self.conn, child = context.Pipe()
        self.process = context.Process(target=engine_main, args=(child, *self.args), name=f"engine-{self.name}", daemon=True)
        self.process.start()
        child.close()
        if not self.conn.poll(300):
            raise RuntimeError(f"the engine process of model {self.name!r} did not start")
        ready = self.conn.recv()
        if ready[0] != "ready":
            raise RuntimeError(f"the engine process of model {self.name!r} failed to start: {ready[1]}")
        self.sent.clear()
        if self.loop is not None:
            watch(self.loop, self.conn, self._readable)

    # ---- called from the server's event loop -------------------------------------------------------

    def submit(self, requests, work: tuple | None = None) -> Job:
        loop = asyncio.get_running_loop()
        if self.loop is not loop:  # the first request (or a test's new loop): listen to the pipe on this one
            if self.loop is not None and not self.loop.is_closed():
                self.loop.remove_reader(self.conn.fileno())
            self.loop = loop
            watch(self.loop, self.conn, self._readable)
        job = Job(requests, loop, work)
        self.room.take(job.cost)
        self.next_ident += 1
        job.ident = self.next_ident
        self.jobs[job.ident] = job
        rows = [dataclasses.replace(r, constraint=self._pattern_for(r.constraint)) for r in requests]
        self._send(("submit", job.ident, rows, work))
        return job

    def cancel(self, job: Job) -> None:
        self._send(("cancel", job.ident))

    def abort(self) -> None:
        self._send(("abort",))

    def stop(self) -> None:
        self.stopping = True
        if self.loop is not None and not self.loop.is_closed():
            self.loop.remove_reader(self.conn.fileno())
        self._send(("stop",))
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()

    def _send(self, message) -> None:
        try:
            with self.sending:
                self.conn.send(message)
        except (OSError, ValueError):  # the process is gone: _readable has seen it, or will
            pass

    def _pattern_for(self, constraint) -> str | None:
        """A row's constraint as the expression it follows; the compiled pattern goes first if not held there."""
        if constraint is None:
            return None
        pattern = constraint.pattern
        if pattern.regex in self.sent:
            self.sent.move_to_end(pattern.regex)
            return pattern.regex
        payload = ("lazy", pattern.end_token) if isinstance(pattern, LazyPattern) else ("automaton", pattern)
        self._send(("pattern", pattern.regex, payload))
        self.sent[pattern.regex] = None
        while len(self.sent) > PATTERNS_HELD:
            self._send(("forget", self.sent.popitem(last=False)[0]))
        return pattern.regex

    def _readable(self) -> None:
        """What the engine process reported: events to their jobs, rows freed, metrics."""
        try:
            while self.conn.poll():
                items, freed, left, observed = self.conn.recv()
                for ident, item in items:
                    job = self.jobs.get(ident)
                    if job is not None:
                        job.events.put_nowait(item)
                if freed:
                    self.room.give(freed)
                for seconds in left:
                    self.room.row_left(seconds)
                for (series, method), value in observed.items():
                    for v in value if method == "observe" else (value,):
                        getattr(getattr(self.series, series), method)(v)
                self.active_rows = observed.get(("active", "set"), self.active_rows)
        except (EOFError, OSError):
            if not self.stopping:
                self._restart()

    def _restart(self) -> None:
        """The engine process died: its jobs end with an error, a new one takes over (loading the run again
        holds the event loop for a few seconds: a crash is rare, and a server without its model has nothing
        to answer meanwhile)."""
        log.error("the engine process of model %s died (exit code %s); starting a new one", self.name, self.process.exitcode)
        self.loop.remove_reader(self.conn.fileno())
        self.conn.close()
        for job in list(self.jobs.values()):
            job.events.put_nowait((None, "the model's engine process died while generating"))
        self.jobs.clear()
        self.room.give(self.room.outstanding)
        self._start()


def watch(loop: asyncio.AbstractEventLoop, conn, on_readable) -> None:
    """`loop` calls `on_readable` when `conn` has a report; `conn` stays blocking (see the module's docstring)."""
    loop.add_reader(conn.fileno(), on_readable)
    os.set_blocking(conn.fileno(), True)  # after add_reader, which uvloop makes non-blocking


# ---- the engine process -------------------------------------------------------------------------------


class PipeOutbox:
    """A turn's events, rows freed and observations, sent as one message."""

    def __init__(self, conn):
        self.conn, self.lock = conn, threading.Lock()  # lock: the buffers, filled from both threads
        self.sending = threading.Lock()  # one message on the pipe at a time
        self.open = False  # nothing goes before the server has heard "ready"
        self.items: list = []
        self.freed, self.left, self.observed = 0, [], {}  # observed: (series, method) -> value(s)

    def put(self, job: Job, item) -> None:
        self.items.append((job.ident, item))

    def flush(self) -> None:
        with self.sending:  # taken first: messages leave in the order they were made
            with self.lock:
                if not self.open or not (self.items or self.freed or self.left or self.observed):
                    return
                message = (self.items, self.freed, self.left, self.observed)
                self.items, self.freed, self.left, self.observed = [], 0, [], {}
            try:
                self.conn.send(message)
            except (OSError, ValueError):  # the server is gone; the reader sees EOF and ends this process
                pass


class ForwardedRoom(QueueRoom):
    """The engine process's side of the queue: unbounded (the server refuses), reporting what leaves."""

    def __init__(self, outbox: PipeOutbox):
        super().__init__(float("inf"))
        self.outbox = outbox

    def give(self, rows: int) -> None:
        with self.outbox.lock:
            self.outbox.freed += rows

    def row_left(self, seconds: float) -> None:
        with self.outbox.lock:
            self.outbox.left.append(seconds)


class ForwardedSeries:
    """One Prometheus series, its observations sent to the server with the turn's events."""

    def __init__(self, outbox: PipeOutbox, name: str):
        self.outbox, self.name = outbox, name

    def set(self, value) -> None:  # only the turn's last value matters
        with self.outbox.lock:
            self.outbox.observed[self.name, "set"] = value

    def inc(self, value=1) -> None:  # summed over the turn
        with self.outbox.lock:
            key = (self.name, "inc")
            self.outbox.observed[key] = self.outbox.observed.get(key, 0) + value

    def observe(self, value) -> None:  # each one (a histogram)
        with self.outbox.lock:
            self.outbox.observed.setdefault((self.name, "observe"), []).append(value)


def engine_main(conn, run: str, device: str, name: str, max_batch: int, threads: int) -> None:
    """The engine process: load the run, decode what the server sends until it says stop or goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the server drains first
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        torch.set_num_threads(threads)
        generator = load(run, device=device)
    except Exception as e:  # noqa: BLE001 - said to the server, which refuses to start
        conn.send(("failed", f"{type(e).__name__}: {e}"))
        return
    outbox = PipeOutbox(conn)
    series = {k: ForwardedSeries(outbox, k) for k in SERIES}
    scheduler = Scheduler(generator, name, max_batch, ForwardedRoom(outbox), SimpleNamespace(**series), outbox,
                          KeptWeights(generator))
    jobs: weakref.WeakValueDictionary[int, Job] = weakref.WeakValueDictionary()
    patterns: dict[str, object] = {}
    conn.send(("ready",))
    outbox.open = True
    while True:  # this thread reads the pipe; the Scheduler's thread decodes
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        if message[0] == "stop":
            break
        try:
            take(message, scheduler, jobs, patterns, generator)
        except Exception:  # a bug must not end the engine: the message is dropped, said in the log
            log.exception("the engine process of model %s could not take a %r message", name, message[0])
            if message[0] == "submit":  # its request is answered, and its rows leave the queue
                _, ident, requests, work = message
                with outbox.lock:
                    outbox.items.append((ident, (None, "the model could not take the request")))
                    outbox.freed += len(requests) if work is None else 1
                scheduler.wake.set()  # its turn sends them: this thread never waits on the server, which may be
                # waiting for it to read
    scheduler.stop()


def take(message: tuple, scheduler: Scheduler, jobs, patterns: dict, generator) -> None:
    """One message from the server, in the engine process."""
    kind = message[0]
    if kind == "submit":
        _, ident, requests, work = message
        for r in requests:
            if r.constraint is not None:
                r.constraint = patterns[r.constraint].constraint()
        job = Job(requests, None, work, ident=ident)
        jobs[ident] = job
        scheduler.enqueue(job)
    elif kind == "cancel":
        job = jobs.get(message[1])
        if job is not None:
            scheduler.cancel(job)
    elif kind == "pattern":
        _, regex, (how, held) = message
        patterns[regex] = LazyPattern(regex, generator.tokenizer, held) if how == "lazy" else held
    elif kind == "forget":
        patterns.pop(message[1], None)
    elif kind == "abort":
        scheduler.abort()
