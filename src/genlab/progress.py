"""Progress bars that draw only on a terminal: a log file or a pipe gets no carriage-return noise."""

from __future__ import annotations

from tqdm import tqdm


def progress_bar(iterable=None, *, enabled: bool = True, **options) -> tqdm:
    """A tqdm bar; shown when `enabled` and stderr is a terminal (tqdm's `disable=None`)."""
    return tqdm(iterable, disable=None if enabled else True, **options)
