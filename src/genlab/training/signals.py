"""Ctrl-C and SIGTERM while training (or any long loop that can save where it is): stop at a step boundary."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class StopRequest:
    signum: int | None = None  # the signal that asked training to stop, once one has


@contextmanager
def stop_signals(enabled: bool = True):
    """While inside, SIGINT and SIGTERM only set `.signum`, so the loop stops at a step boundary;
    a second Ctrl-C interrupts at once. Outside the main thread nothing is installed."""
    stop = StopRequest()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        stop.signum = signum
        signal.signal(signum, previous[signum])  # the next one acts at once

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)
