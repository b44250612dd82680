"""The `genlab` command: a thin typer app (`root.py`); each verb group lives in its own module and
calls the Python API (genlab.api) — the CLI holds no logic of its own. `main` runs it and turns
errors into one line and an exit status."""

from __future__ import annotations

# Commands import the engines they run inside their bodies, on purpose: `genlab --help` and a bad flag answer
# at once, before torch (seconds) loads.

import signal
import sys


def _interrupted_while_loading(signum, frame) -> None:
    sys.exit(130)


# While this module loads, Ctrl-C exits 130 without a traceback (KeyboardInterrupt there would print one,
# main's handling not being in place yet; on a busy machine the start-up test hit it). A Ctrl-C ignored by
# the parent stays ignored.
if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_while_loading)

import errno  # noqa: E402 - after the handler above
import os  # noqa: E402
import traceback  # noqa: E402

from genlab.core.progress import tell  # noqa: E402


def _register() -> None:
    # Each module adds its verbs to `app`; import order is the order in --help.
    from genlab.cli import bench, clip, code, compare, data, demo, evaluate, export, report, rl, sample, serve, sweep, train  # noqa: F401


# Failures of the machine a command runs on (a full disk or quota, a read-only or forbidden place), said as
# such rather than as a genlab bug.
MACHINE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def _terminated(signum, frame) -> None:
    tell("terminated")
    raise SystemExit(128 + signum)


def main() -> None:
    """Run the CLI. Exit status: 0 done, 1 a user's mistake or a failure (one line, `error: ...`),
    2 a usage error (usage and one line), 128 + N stopped by signal N (130 for Ctrl-C)."""
    # SIGTERM unwinds as Ctrl-C does, so that what a command was building (a half-prepared dataset and its
    # spill, a half-written export) is removed rather than left beside its destination; so does SIGHUP (the
    # terminal closed), unless nohup set it aside. Training and the server put their own handlers in place
    # while they run.
    try:
        # Imported here, inside the try: Ctrl-C while torch and the verbs load is "interrupted", not a traceback.
        from genlab.training.signals import stopping_signals

        for signum in set(stopping_signals()) - {signal.SIGINT}:  # Ctrl-C stays Python's KeyboardInterrupt
            signal.signal(signum, _terminated)
        from genlab.cli.root import app

        _register()
        status = app(standalone_mode=False, prog_name="genlab")
        if isinstance(status, int) and status:  # typer turns Ctrl-C (and ctx.exit) into a returned status
            raise KeyboardInterrupt if status == 130 else SystemExit(status)
    except KeyboardInterrupt:
        if debugging():
            traceback.print_exc()
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        sys.exit(exit_status(e))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # A torchrun worker whose work is done and written: leave without the interpreter's teardown, where
        # torch's process-group threads can be destroyed in an order that aborts the process (seen in about
        # 1 run in 10 on 2 CPU ranks: "terminate called without an active exception"), and torchrun then
        # reports a finished run as failed.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def exit_status(e: Exception) -> int:
    """Say in one line what stopped the command; returns its exit status."""
    import typer
    from typer.exceptions import TyperException

    from genlab.core.errors import GenlabError, Interrupted  # here, as every import: see `main`

    if isinstance(e, typer.Abort):
        return 130
    if isinstance(e, TyperException):  # usage errors: unknown option, missing argument, bad choice
        e.show()
        return e.exit_code
    if isinstance(e, Interrupted):  # not a mistake: the user stopped it, and a checkpoint was written
        print(f"stopped by {e}", file=sys.stderr)
        return e.exit_code
    if debugging():
        traceback.print_exception(e)
    if isinstance(e, GenlabError):
        print(f"error: {e}", file=sys.stderr)
        return 1
    if isinstance(e, OSError) and e.errno in MACHINE_ERRNOS:  # the machine's state, not a bug: say which file
        print(f"error: {e.filename + ': ' if e.filename else ''}{e.strerror}", file=sys.stderr)
        return 1
    detail = str(e).splitlines()[0][:300] if str(e) else ""  # a bug in genlab: one line, the traceback on request
    print(f"error: internal error ({type(e).__name__}: {detail}); rerun with --debug or GENLAB_DEBUG=1 "
          "for the traceback and report it", file=sys.stderr)
    return 1


def debugging() -> bool:
    from genlab.cli.root import debugging as asked

    return asked()


def __getattr__(name: str):
    if name == "app":  # the typer app, for those who drive the CLI in-process (tests, CliRunner)
        from genlab.cli.root import app

        _register()
        return app
    raise AttributeError(f"module 'genlab.cli' has no attribute {name!r}")


# Loaded: Ctrl-C is KeyboardInterrupt again, for main() to handle (and for a program that imports this module).
if signal.getsignal(signal.SIGINT) is _interrupted_while_loading:
    signal.signal(signal.SIGINT, signal.default_int_handler)
