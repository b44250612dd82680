"""The `genlab` command: a thin typer app; each verb group lives in its own module
and calls the Python API (genlab.api) — the CLI holds no logic of its own."""

from __future__ import annotations

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
def _global(debug: bool = typer.Option(False, "--debug", help="Show the full traceback on errors.")) -> None:
    global _debug
    _debug = debug


def _register() -> None:
    # Each module adds its verbs to `app`; import order is the order in --help.
    from genlab.cli import code, compare, data, demo, evaluate, sample, train  # noqa: F401


def main() -> None:
    _register()
    try:
        app(standalone_mode=False)
    except GenlabError as e:
        if _debug or "--debug" in sys.argv:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:  # click usage errors come as click exceptions
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(1)
        raise
