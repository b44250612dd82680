"""Work called off while it runs. A served image, music or audio request samples on its model's own thread;
when its client leaves, the sampling loop stops at its next step instead of finishing for nobody and holding
the model from every request behind it.

The call-off is per thread (set by whoever runs the work there), so the loops ask with one call and need no
extra argument threaded through every generator.
"""

from __future__ import annotations

import contextlib
import threading

_here = threading.local()


class Cancelled(Exception):
    """The work running on this thread was called off (its client left)."""


@contextlib.contextmanager
def cancellable(called_off: threading.Event):
    """Run the body so that `check()` on this thread raises Cancelled once `called_off` is set."""
    _here.event = called_off
    try:
        yield
    finally:
        _here.event = None


def check() -> None:
    """Raise Cancelled when the work on this thread was called off; long sampling loops call it once a step."""
    event = getattr(_here, "event", None)
    if event is not None and event.is_set():
        raise Cancelled
