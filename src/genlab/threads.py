"""How many CPU threads torch computes with: `--threads N|auto` on every command that computes, `train.threads`.

`auto` is OMP_NUM_THREADS when the environment sets it (a choice someone already made), else the number of
cores this process may run on (os.sched_getaffinity: a container's or taskset's limit, not the machine's count). torch's own default can oversubscribe a shared machine badly; choosing
here, and printing the choice, makes a run's speed explainable.
"""

from __future__ import annotations

import os

from genlab.errors import GenlabError


def resolve(value: int | str | None, flag: str = "--threads") -> int:
    """`auto` (or None) -> OMP_NUM_THREADS if set, else the cores this process may use; a positive number -> itself."""
    if value is None or value == "auto":
        if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
            return int(os.environ["OMP_NUM_THREADS"])
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            return os.cpu_count() or 1
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise GenlabError(f"{flag}: {value!r} is neither a number of threads nor 'auto'") from None
    if n < 1:
        raise GenlabError(f"{flag}: {n} threads; give at least 1, or 'auto'")
    return n


def use(value: int | str | None, flag: str = "--threads") -> int:
    """Set torch's intra-op threads (and inter-op threads, where torch still allows it) -> the number set."""
    import torch

    global _interop_set
    n = resolve(value, flag)
    torch.set_num_threads(n)
    # Inter-op threads can be set once, before any parallel work; not at all under torchrun, where the
    # process group's own threads are already running.
    if not _interop_set and "WORLD_SIZE" not in os.environ:
        _interop_set = True
        try:
            torch.set_num_interop_threads(n)
        except RuntimeError:
            pass
    return n


_interop_set = False
