"""genlab: train, sample, evaluate, export and serve generative models on your own data."""

# Everything loads on first use (PEP 562), so `import genlab` and the CLI's start cost no torch import until
# one is needed, and Ctrl-C while it loads is the CLI's to handle: this file imports nothing, so the command's
# start reaches genlab.cli's handler before any import of ours (a Ctrl-C in genlab.core printed a traceback).
_LAZY = {"Run": "genlab.api", "load": "genlab.api", "train": "genlab.api", "RunConfig": "genlab.core.config",
         "build_config": "genlab.core.config", "GenlabError": "genlab.core.errors"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'genlab' has no attribute {name!r}")

__version__ = "0.1.0"
__all__ = ["GenlabError", "Run", "RunConfig", "build_config", "load", "report", "serve", "train", "__version__"]


def serve(runs: list[str], **options) -> None:
    """Serve runs (and hf:PATH models) behind OpenAI's API until interrupted: what `genlab serve` runs.
    Options: host, port, names, api_key, api_key_file, insecure, device, max_batch, max_queue, allow_origins,
    allow_hosts, constraint_timeout, drain_timeout."""
    from genlab.server import serve as run

    run(runs, **options)


def report(run, out=None):
    """Write the run's page (RUN/index.html, or `out`): what `genlab report` runs; returns its path."""
    from genlab.workflows.report import write_report

    return write_report(run, out)
