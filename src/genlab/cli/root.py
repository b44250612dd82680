"""The typer app every command module adds its verbs to, and the global `--debug` switch."""

from __future__ import annotations

# Commands import the engines they run inside their bodies, on purpose: `genlab --help` and a bad flag answer
# at once, before torch (seconds) loads.

import os
import sys

import typer

app = typer.Typer(
    name="genlab",
    help="Train, sample and evaluate generative models on your own data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_debug = False


@app.callback()
def _global(debug: bool = typer.Option(False, "--debug", help="Show the full traceback on errors (or set GENLAB_DEBUG=1).")) -> None:
    global _debug
    _debug = debug


def threads_option():
    return typer.Option("auto", "--threads", help="CPU threads: a number, or auto (OMP_NUM_THREADS if set, else the cores this process may use that are idle now, at least 1).")


def use_threads(value: str) -> int:
    """Apply --threads; returns the number chosen (train prints it and records it in metrics.jsonl)."""
    from genlab.core.threads import use

    return use(value)


def debugging() -> bool:
    return _debug or "--debug" in sys.argv[1:] or os.environ.get("GENLAB_DEBUG", "") not in ("", "0")
