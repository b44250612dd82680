"""The `genlab` command: a thin typer app; each verb group lives in its own module
and calls the Python API (genlab.api) — the CLI holds no logic of its own."""

from __future__ import annotations

import os
import sys
import traceback

import typer

from genlab.errors import GenlabError

app = typer.Typer(
    name="genlab",
    help="Train, sample, evaluate, export and serve generative models on your own data.",
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


def _register() -> None:
    # Each module adds its verbs to `app`; import order is the order in --help.
    from genlab.cli import code, compare, data, demo, evaluate, sample, train  # noqa: F401


def debugging() -> bool:
    return _debug or "--debug" in sys.argv[1:] or os.environ.get("GENLAB_DEBUG", "") not in ("", "0")


def main() -> None:
    """Run the CLI. Exit status: 0 done, 1 a user's mistake or a failure (one line, `error: ...`),
    2 a usage error (usage and one line), 128 + N stopped by signal N (130 for Ctrl-C)."""
    from typer.exceptions import TyperException

    _register()
    try:
        app(standalone_mode=False, prog_name="genlab")
    except typer.Abort:
        sys.exit(130)
    except TyperException as e:  # usage errors: unknown option, missing argument, bad choice
        e.show()
        sys.exit(e.exit_code)
    except GenlabError as e:
        if debugging():
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 1))
    except KeyboardInterrupt:
        if debugging():
            traceback.print_exc()
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:  # a bug in genlab: one line by default, the traceback on request
        if debugging():
            traceback.print_exc()
        detail = str(e).splitlines()[0][:300] if str(e) else ""
        print(f"error: internal error ({type(e).__name__}: {detail}); rerun with --debug or GENLAB_DEBUG=1 "
              "for the traceback and report it", file=sys.stderr)
        sys.exit(1)
