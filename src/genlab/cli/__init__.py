"""The `genlab` command: a thin typer app (`root.py`); each verb group lives in its own module and
calls the Python API (genlab.api) — the CLI holds no logic of its own. `main` runs it and turns
errors into one line and an exit status."""

from __future__ import annotations

import os
import sys
import traceback

import typer

from genlab.cli.root import app, debugging
from genlab.errors import GenlabError, Interrupted


def _register() -> None:
    # Each module adds its verbs to `app`; import order is the order in --help.
    from genlab.cli import bench, clip, code, compare, data, demo, evaluate, export, report, rl, sample, serve, train  # noqa: F401


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
    except Interrupted as e:  # not a mistake: the user stopped it, and a checkpoint was written
        print(f"stopped by {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except GenlabError as e:
        if debugging():
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
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
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # A torchrun worker whose work is done and written: leave without the interpreter's teardown, where
        # torch's process-group threads can be destroyed in an order that aborts the process (seen in about
        # 1 run in 10 on 2 CPU ranks: "terminate called without an active exception"), and torchrun then
        # reports a finished run as failed.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
