"""Progress bars that draw on a terminal, and in a log file or a pipe write a plain line every few seconds
instead (no carriage-return noise, and never minutes of silence during a long phase); and the status lines
said in signal handlers, which must not fail when nobody reads them."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tqdm import tqdm


class LogLines:
    """A file for tqdm that turns its redrawn status line into one plain line per update."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable=None, *, enabled: bool = True, log_every: float | None = 10.0, **options) -> tqdm:
    """A tqdm bar when `enabled`: drawn on a terminal; elsewhere a line every `log_every` seconds (None: silent
    there, for callers that write their own lines)."""
    from tqdm import tqdm  # here: the CLI imports this module before it knows whether anything will be drawn

    if not enabled:
        return tqdm(iterable, disable=True, **options)
    if sys.stderr.isatty() or log_every is None:
        return tqdm(iterable, disable=None, **options)
    options.pop("dynamic_ncols", None)
    # delay: a phase shorter than one interval writes nothing at all
    return tqdm(iterable, file=LogLines(sys.stderr), mininterval=log_every, maxinterval=log_every, delay=log_every,
                ncols=80, **options)


def tell(line: str) -> None:
    """A line on stderr for whoever started the command. When they are gone (a closed pipe), nobody hears it and
    the command goes on, or stops, all the same: a failed print in a SIGTERM handler once left a server deaf
    to the signal."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # a broken pipe, or a closed stream
        pass
