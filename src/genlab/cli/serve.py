"""`genlab serve RUN_OR_HF...`: the OpenAI-compatible server and its playground page."""

from __future__ import annotations

# Commands import the engines they run inside their bodies, on purpose: `genlab --help` and a bad flag answer
# at once, before torch (seconds) loads.

from typing import Optional

import typer

from genlab.cli.root import app, threads_option, use_threads


@app.command(no_args_is_help=True)
def serve(
    runs: list[str] = typer.Argument(..., help="Run folders and/or hf:PATH models; each is named after its folder."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (beyond loopback needs --api-key)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    name: list[str] = typer.Option([], "--name", help="NAME=RUN: serve RUN as NAME (repeatable)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="Require 'Authorization: Bearer KEY' (other local users can read it in /proc: prefer --api-key-file or GENLAB_API_KEY)."),
    api_key_file: Optional[str] = typer.Option(None, "--api-key-file", help="Read the key from this file's first line."),
    insecure: bool = typer.Option(False, "--insecure", help="Allow a non-loopback address without an API key."),
    max_batch: int = typer.Option(64, "--max-batch", help="Rows decoded together per model."),
    max_queue: int = typer.Option(256, "--max-queue", help="Rows queued or running per model before answering 429."),
    allow_origin: list[str] = typer.Option([], "--allow-origin", "--cors-origin", help="Allow web pages from this origin, e.g. http://localhost:3000 (repeatable; other sites are refused)."),
    allow_host: list[str] = typer.Option([], "--allow-host", help="Also answer requests addressed to this host name (repeatable; '*' for any). Localhost and --host always are."),
    constraint_timeout: float = typer.Option(2.0, "--constraint-timeout", help="Seconds a structured-output pattern may take to build its automaton (which makes answers complete within max_tokens); past them it is matched lazily (llguidance)."),
    drain_timeout: float = typer.Option(10.0, "--drain-timeout", help="On SIGTERM or Ctrl-C, seconds to let work in flight finish."),
    max_connections: int = typer.Option(1000, "--max-connections", help="Connections open at once; at the limit a new one closes the one waiting longest on its client (keep it under the open-file limit, ulimit -n)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    engine_process: bool = typer.Option(True, "--engine-process/--in-process", help="Decode text in a process of its own per model (a lone client streams faster; each model is loaded twice), or in the server's."),
    threads: str = threads_option(),
) -> None:
    """Serve runs behind OpenAI's API (/v1/completions, /v1/chat/completions, /v1/images/generations, ...) with a playground at /."""
    use_threads(threads)
    from genlab.core.errors import check_range
    from genlab.server import serve as run_server

    check_range("--port", port, 0, 65535)
    check_range("--max-batch", max_batch, 1, 4096)
    check_range("--max-queue", max_queue, 1, 1_000_000)
    check_range("--constraint-timeout", constraint_timeout, 0.1, 600)
    check_range("--drain-timeout", drain_timeout, 0, 3600)
    check_range("--max-connections", max_connections, 2, 1_000_000)
    run_server(runs, host, port, name, api_key, insecure, device, max_batch, max_queue, allow_origin or None, allow_host or None,
               api_key_file, constraint_timeout, drain_timeout, engine_process, max_connections)
