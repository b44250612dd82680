"""Ctrl-C, SIGTERM and SIGHUP while training (or any long loop that can save where it is): stop at a step boundary.

SIGHUP is a closed terminal (an ssh session that dropped): the run saves its step as for SIGTERM, unless the
process was started to ignore it (`nohup`), which is left as it is."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class StopRequest:
    signum: int | None = None  # the signal that asked training to stop, once one has


def stopping_signals() -> tuple[int, ...]:
    """The signals that stop a command: Ctrl-C, SIGTERM, and SIGHUP unless it is ignored (nohup)."""
    hangup = () if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN else (signal.SIGHUP,)
    return (signal.SIGINT, signal.SIGTERM, *hangup)


@contextmanager
def stop_signals(enabled: bool = True):
    """While inside, SIGINT, SIGTERM and SIGHUP only set `.signum`, so the loop stops at a step boundary;
    a second Ctrl-C interrupts at once. Outside the main thread nothing is installed."""
    stop = StopRequest()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        stop.signum = signum
        signal.signal(signum, previous[signum])  # the next one acts at once

    previous = {sig: signal.signal(sig, handler) for sig in stopping_signals()}
    try:
        yield stop
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)
