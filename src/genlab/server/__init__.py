"""`genlab serve`: trained runs and local Hugging Face models behind OpenAI's API (see app.py, docs/serve.md).

    genlab.serve(["runs/shakespeare", "hf:./my-model"], port=8000, api_key="secret")
    app = genlab.server.build(["runs/shakespeare"])     # the FastAPI app, to mount or run yourself
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from pathlib import Path

from genlab.errors import GenlabError


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


def build(runs: list[str], names: list[str] | None = None, api_key: str | None = None, host: str = "127.0.0.1",
          insecure: bool = False, device: str = "auto", **options):
    """The FastAPI app for `runs`; refuses a non-loopback address without an API key unless `insecure`."""
    from genlab.api import load
    from genlab.server.app import create_app

    api_key = api_key or os.environ.get("GENLAB_API_KEY") or None
    if not is_loopback(host) and not api_key and not insecure:
        raise GenlabError(f"--host {host}: serving beyond this machine needs --api-key (or GENLAB_API_KEY); "
                          "pass --insecure to serve without one")
    from genlab.export import exported_format

    chosen = model_names(runs, names)
    models = {name: load(run, device=device) for name, run in chosen.items()}
    # A web export's page files (onnxruntime-web, the ONNX model, its sampler) are served too: the playground
    # runs the same prompt in the browser beside the server.
    web = {name: Path(run) for name, run in chosen.items() if not run.startswith("hf:") and exported_format(run) == "web"}
    return create_app(models, api_key=api_key, web_folders=web, **options)


def serve(runs: list[str], host: str = "127.0.0.1", port: int = 8000, names: list[str] | None = None,
          api_key: str | None = None, insecure: bool = False, device: str = "auto", max_batch: int = 64,
          max_queue: int = 256, cors_origins: list[str] | None = None) -> None:
    """Serve until interrupted (what `genlab serve` runs)."""
    import uvicorn

    app = build(runs, names, api_key, host, insecure, device, max_batch=max_batch, max_queue=max_queue,
                cors_origins=cors_origins)
    try:
        sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as e:
        raise GenlabError(f"--host {host} --port {port}: cannot listen there ({e.strerror})") from None
    import torch

    print(f"serving {', '.join(app.state.served)} on http://{host}:{sock.getsockname()[1]}/ "
          f"(playground at /, OpenAI API under /v1; {torch.get_num_threads()} torch threads)", file=sys.stderr)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])
