"""`genlab serve`: trained runs and local Hugging Face models behind OpenAI's API (see app.py, docs/serve.md).

    genlab.serve(["runs/shakespeare", "hf:./my-model"], port=8000, api_key="secret")
    app = genlab.server.build(["runs/shakespeare"])     # the FastAPI app, to mount or run yourself
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import threading
from pathlib import Path

import uvicorn

from genlab.api import load
from genlab.core.errors import GenlabError
from genlab.core.progress import tell
from genlab.export import exported_format
from genlab.server.app import create_app
from genlab.server.connections import YieldingHttpProtocol
from genlab.training.signals import stopping_signals


MAX_CONNECTIONS = 1000  # the default: past it a new connection closes the one waiting longest on its client


def model_names(runs: list[str], names: list[str] | None = None) -> dict[str, str]:
    """name -> run (or hf:PATH): each named after its folder, or NAME=RUN from `names`; names are unique."""
    chosen: dict[str, str] = {}
    for item in names or []:
        if "=" not in item:
            raise GenlabError(f"--name {item!r}: write NAME=RUN")
        name, run = item.split("=", 1)
        chosen[name] = run
    for run in runs:
        if run in chosen.values():
            continue
        name = Path(run.removeprefix("hf:")).name or run
        if name in chosen:
            raise GenlabError(f"{run}: another model is already served as {name!r}; name them with --name NAME=RUN")
        chosen[name] = run
    if not chosen:
        raise GenlabError("serve: give at least one run folder or hf:PATH")
    return chosen


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


MAX_KEY_BYTES = 4096


def read_key(api_key: str | None = None, key_file: str | None = None) -> str | None:
    """The API key: given, else read from `key_file` (first line), else $GENLAB_API_KEY; None for no key.
    (A key on the command line shows in /proc to every local user; a file or the environment does not.)"""
    if key_file and not api_key:
        try:
            with open(key_file, "rb") as f:  # a pipe too (`<(pass show genlab)`), so no is_file() check
                head = f.read(MAX_KEY_BYTES + 1)  # /dev/zero, or a huge file, is not read to its end
            api_key = head.decode("utf-8").strip().splitlines()[0].strip()
        except (OSError, UnicodeDecodeError, IndexError):
            raise GenlabError(f"--api-key-file {key_file}: cannot read a key from it") from None
        if not api_key:
            raise GenlabError(f"--api-key-file {key_file}: the file holds no key")
        where = f"--api-key-file {key_file}"
    else:
        api_key, where = api_key or os.environ.get("GENLAB_API_KEY") or None, "--api-key" if api_key else "GENLAB_API_KEY"
    if api_key is not None and not (len(api_key) <= MAX_KEY_BYTES and api_key.isascii() and api_key.isprintable()
                                    and " " not in api_key):
        # It travels in an HTTP header: a key no client can send would lock every client out.
        raise GenlabError(f"{where}: a key is one word of printable ASCII, at most {MAX_KEY_BYTES} characters")
    return api_key


def build(runs: list[str], names: list[str] | None = None, api_key: str | None = None, host: str = "127.0.0.1",
          insecure: bool = False, device: str = "auto", api_key_file: str | None = None, engine_process: bool = True,
          **options):
    """The FastAPI app for `runs`; refuses a non-loopback address without an API key unless `insecure`. With
    `engine_process`, each text model decodes in a process of its own (tokens cross a pipe, not the interpreter
    lock: server/engine_process.py). Options: max_batch, max_queue, allow_origins, allow_hosts,
    constraint_timeout, constraint_memory_mb, max_body_bytes."""
    api_key = read_key(api_key, api_key_file)
    if not is_loopback(host) and not api_key and not insecure:
        raise GenlabError(f"--host {host}: serving beyond this machine needs --api-key (or GENLAB_API_KEY); "
                          "pass --insecure to serve without one")
    chosen = model_names(runs, names)
    models = {name: load(run, device=device) for name, run in chosen.items()}
    # A web export's page files (onnxruntime-web, the ONNX model, its sampler) are served too: the playground
    # runs the same prompt in the browser beside the server.
    web = {name: Path(run) for name, run in chosen.items() if not run.startswith("hf:") and exported_format(run) == "web"}
    engine_runs = {name: (run, device) for name, run in chosen.items()} if engine_process else {}
    return create_app(models, api_key=api_key, web_folders=web, bound_host=host, engine_runs=engine_runs, **options)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket with TCP_NODELAY, which every accepted connection inherits: without it a keep-alive
    client waits for the delayed ACK (~40 ms) before each answer's last segment."""
    try:
        sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as e:
        raise GenlabError(f"--host {host} --port {port}: cannot listen there ({e.strerror})") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def serve(runs: list[str], host: str = "127.0.0.1", port: int = 8000, names: list[str] | None = None,
          api_key: str | None = None, insecure: bool = False, device: str = "auto", max_batch: int = 64,
          max_queue: int = 256, allow_origins: list[str] | None = None, allow_hosts: list[str] | None = None,
          api_key_file: str | None = None, constraint_timeout: float = 2.0, drain_timeout: float = 10.0,
          engine_process: bool = True, max_connections: int = MAX_CONNECTIONS) -> None:
    """Serve until SIGTERM or Ctrl-C (what `genlab serve` runs): the first stops accepting, lets work in flight
    finish for up to `drain_timeout` seconds, cancels the rest and returns; a second exits at once."""
    app = build(runs, names, api_key, host, insecure, device, api_key_file, engine_process, max_batch=max_batch, max_queue=max_queue,
                allow_origins=allow_origins, allow_hosts=allow_hosts, constraint_timeout=constraint_timeout)
    sock = listen(host, port)
    import torch

    tell(f"serving {', '.join(s.name for s in app.state.registry)} on http://{host}:{sock.getsockname()[1]}/ "
         f"(playground at /, OpenAI API under /v1; {torch.get_num_threads()} torch threads)")
    # At most `max_connections` at once, so that clients cannot exhaust the process's file descriptors; at the
    # limit, connections waiting on their clients make way (connections.py) rather than every request getting a 503.
    server = DrainingServer(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=drain_timeout,
                                           limit_concurrency=max_connections, http=YieldingHttpProtocol))
    server.run(sockets=[sock])


class DrainingServer(uvicorn.Server):
    """uvicorn's server, draining on the first SIGTERM, SIGHUP or Ctrl-C: it stops accepting, lets work in flight
    run for the drain timeout less a moment, then ends what is left with a 503 (a stream with an error event)
    and exits 0. A second signal exits at once (uvicorn forces only on a second Ctrl-C)."""

    @contextlib.contextmanager
    def capture_signals(self):
        # uvicorn listens for SIGINT and SIGTERM only; a closed terminal (SIGHUP) drains as they do, unless the
        # server was started under nohup.
        hangup = threading.current_thread() is threading.main_thread() and signal.SIGHUP in stopping_signals()
        previous = signal.signal(signal.SIGHUP, self.handle_exit) if hangup else None
        try:
            with super().capture_signals():
                yield
        finally:
            if hangup:
                signal.signal(signal.SIGHUP, previous)

    def handle_exit(self, sig, frame):
        if self.should_exit:
            tell("second signal: exiting now")
            os._exit(1)
        drain = self.config.timeout_graceful_shutdown or 0
        tell(f"stopping: finishing work in flight (at most {drain:g} s; signal again to exit now)")
        super().handle_exit(sig, frame)
        self._captured_signals.clear()  # a drained server exits 0 rather than re-raising the signal
        timer = threading.Timer(max(0.0, drain - 0.5), self.config.app.state.registry.abort)
        timer.daemon = True
        timer.start()
