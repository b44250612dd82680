"""The decode loop in an engine process of its own (server/engine_process.py): the same answers as decoding in the
server's process, patterns sent once and forgotten when told, a dead engine replaced, none outliving the server."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import genlab
from conftest import make_corpus, tiny_config
from test_serve import Server


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine")
    (root / "corpus.txt").write_text(make_corpus(4000))
    return genlab.train(tiny_config(root / "corpus.txt", root / "words", max_steps=20), progress=False).path


@pytest.fixture(scope="module")
def servers(run):
    from genlab.server import build

    both = {mode: Server(build([str(run)], device="cpu", engine_process=mode == "process")) for mode in ("process", "thread")}
    yield both
    for s in both.values():
        s.stop()


def complete(server, **body):
    r = httpx.post(server.url + "/v1/completions", json={"model": "words", "prompt": "The", "max_tokens": 24, "seed": 3} | body,
                   timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def streamed_text(server, **body) -> str:
    text = ""
    with httpx.stream("POST", server.url + "/v1/completions", timeout=60,
                      json={"model": "words", "prompt": "The", "max_tokens": 24, "seed": 3, "stream": True} | body) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                text += "".join(c["text"] or "" for c in chunk["choices"])
    return text


def test_an_engine_process_answers_as_the_servers_own_process_does(servers):
    process, thread = servers["process"], servers["thread"]
    assert process.app.state.registry.served["words"].scheduler.process.is_alive()
    for body in ({"n": 3, "temperature": 0.9, "top_k": 20}, {"temperature": 0, "logprobs": 3},
                 {"echo": True, "logprobs": 2, "max_tokens": 4}, {"genlab_regex": "(ab|ba)+c", "n": 2}):
        a, b = complete(process, **body), complete(thread, **body)
        assert a["choices"] == b["choices"] and a["usage"] == b["usage"], body  # texts, logprobs, finish reasons
    assert streamed_text(process, temperature=0.8) == streamed_text(thread, temperature=0.8) == \
        complete(thread, temperature=0.8)["choices"][0]["text"]
    embedded = [httpx.post(s.url + "/v1/embeddings", json={"model": "words", "input": ["the cat", "a dog"]}, timeout=60).json()
                for s in (process, thread)]
    assert embedded[0]["data"] == embedded[1]["data"]
    metrics = httpx.get(process.url + "/metrics").text  # the engine process's observations reach /metrics
    tokens = next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("genlab_generated_tokens_total"))
    assert tokens >= 3 * 24


def test_patterns_are_sent_once_and_forgotten_as_the_server_says(servers, monkeypatch):
    from genlab.server import engine_process

    monkeypatch.setattr(engine_process, "PATTERNS_HELD", 1)  # every new pattern pushes the last one out
    engine = servers["process"].app.state.registry.served["words"].scheduler
    for regex in ("(ab)+c", "(ba)+c", "(ab)+c", "t[aeiou]+"):
        for choice in complete(servers["process"], genlab_regex=regex, n=2, temperature=1.0)["choices"]:
            assert re.fullmatch(regex, choice["text"]), (regex, choice["text"])
        assert list(engine.sent) == [regex]


def test_a_dead_engine_fails_its_requests_and_is_replaced(servers):
    server = servers["process"]
    engine = server.app.state.registry.served["words"].scheduler
    old = engine.process
    os.kill(old.pid, signal.SIGKILL)  # as the kernel's OOM killer would
    old.join(timeout=10)
    first = httpx.post(server.url + "/v1/completions", json={"model": "words", "prompt": "The", "max_tokens": 8}, timeout=60)
    assert first.status_code in (200, 500)  # sent before the death was noticed: an error, never a hang
    assert engine.process is not old and engine.process.is_alive()
    assert complete(server)["choices"][0]["text"] == complete(servers["thread"])["choices"][0]["text"]
    assert engine.room.outstanding == 0


def test_the_engine_process_never_outlives_a_killed_server(run):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([str(Path(sys.executable).with_name("genlab")), "serve", str(run), "--port", str(port),
                             "--threads", "1"], env={**os.environ, "GENLAB_API_KEY": ""},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("the server did not start: " + proc.stderr.read())
        children = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        engines = [pid for pid in children if "genlab" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                   or "multiprocessing" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")]
        assert engines, "no engine process under the server"
    finally:
        proc.kill()  # no chance to stop its children
        proc.wait()
    for _ in range(100):
        if not any(Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
                   for pid in engines):
            return
        time.sleep(0.1)
    pytest.fail(f"engine processes {engines} still run after their server was killed")


@pytest.mark.parametrize("loop_kind", ["uvloop", "asyncio"])
def test_a_report_written_in_pieces_reaches_the_server_whole(loop_kind):
    """A big report (a long echo's logprobs) can be half written when the event loop sees the pipe readable;
    under uvloop the pipe was non-blocking, and reading it as one message took a live engine for dead. Each
    report arrives once, whole and in order, and only the engine's end closing says it is gone."""
    import asyncio
    import multiprocessing
    import threading

    from genlab.server.engine_process import watch

    reader_end, writer_end = multiprocessing.Pipe(duplex=False)
    big = ("events", "x" * 3_000_000)  # far past a pipe's 64 KiB buffer: written while the server reads
    sent = [("small", 1), big, ("small", 2)]
    capture_r, capture_w = multiprocessing.Pipe(duplex=False)  # the big report's bytes as a Connection frames them
    threading.Thread(target=capture_w.send, args=(big,), daemon=True).start()
    framed = b""
    while capture_r.poll(1):
        framed += os.read(capture_r.fileno(), 1 << 20)

    def engine():
        writer_end.send(sent[0])
        half = len(framed) // 2
        for piece in (framed[:half], framed[half:]):  # the big report in two halves, a pause between
            with memoryview(piece) as rest:
                while rest:
                    rest = rest[os.write(writer_end.fileno(), rest):]
            time.sleep(0.3)
        writer_end.send(sent[2])
        writer_end.close()

    async def server():
        loop = asyncio.get_running_loop()
        got, done = [], loop.create_future()

        def readable():  # as EngineProcess._readable reads
            try:
                while reader_end.poll():
                    got.append(reader_end.recv())
            except (EOFError, OSError) as e:
                loop.remove_reader(reader_end.fileno())
                done.set_result(e)

        watch(loop, reader_end, readable)
        thread = threading.Thread(target=engine, daemon=True)  # left writing, should the server stop reading
        thread.start()
        ended = await asyncio.wait_for(done, 30)
        thread.join(5)
        return got, ended

    if loop_kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        got, ended = uvloop.run(server())
    else:
        got, ended = asyncio.run(server())
    assert got == sent
    assert isinstance(ended, EOFError)  # only the engine's end closing ends it, not a half-written report
    reader_end.close()


def test_a_job_cancelled_before_its_first_turn_never_runs(run):
    """A client that leaves at once: its job and its cancel both reach the decode loop between two turns. The
    cancel was looked for before the job was taken from the inbox, so it found nothing, and the job was then
    admitted and decoded to its end (rows held, tokens made for nobody). The decode thread is held in a piece
    of work while the two arrive."""
    import threading
    from types import SimpleNamespace

    from genlab.server.batching import SERIES, Job, QueueRoom, Scheduler

    class Outbox:
        def __init__(self):
            self.items = []

        def put(self, job, item):
            self.items.append((job.ident, item))

        def flush(self):
            pass

    class Series:  # Prometheus' surface, recording nothing
        def set(self, value):
            pass

        inc = observe = set

    gen = genlab.load(run, device="cpu")
    gate = threading.Event()

    def held():  # a piece of work that waits for the test
        gate.wait(30)
        yield
        return "done"

    gen.held = held
    outbox, room = Outbox(), QueueRoom(100)
    scheduler = Scheduler(gen, "words", 8, room, SimpleNamespace(**{k: Series() for k in SERIES}), outbox)
    try:
        room.take(1)
        scheduler.enqueue(Job([], None, ("held", ()), ident=1))
        time.sleep(0.2)  # the decode thread is inside the work now
        rows = gen.requests("The", 2, 0, [], max_new_tokens=200)
        room.take(len(rows))
        job = Job(rows, None, None, ident=2)
        scheduler.enqueue(job)
        scheduler.cancel(job)
        gate.set()
        for _ in range(200):
            if room.outstanding == 0:
                break
            time.sleep(0.01)
        assert room.outstanding == 0 and not scheduler.running
        assert not [item for ident, item in outbox.items if ident == 2]  # not one token decoded for it
    finally:
        gate.set()
        scheduler.stop()
