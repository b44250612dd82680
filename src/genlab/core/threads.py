"""How many CPU threads torch computes with: `--threads N|auto` on every command that computes, `train.threads`.

`auto` is OMP_NUM_THREADS when the environment sets it (a choice someone already made), else the cores this
process may run on (os.sched_getaffinity: a container's or taskset's limit, not the machine's count) that sat
idle over the last tenth of a second (/proc/stat), at least one. On a busy machine a thread per core thrashes:
measured on 2 cores beside 2 busy processes, 2 threads trained at a quarter of 1 thread's speed and sampled
ten times slower (BENCHMARKS.md, "Threads on a busy machine"). Choosing here, and printing the choice, makes
a run's speed explainable.
"""

from __future__ import annotations

import os

from genlab.core.errors import GenlabError


def resolve(value: int | str | None, flag: str = "--threads") -> int:
    """`auto` (or None) -> OMP_NUM_THREADS if set, else the cores this process may use that are idle now (at least
    one); a positive number -> itself."""
    if value is None or value == "auto":
        if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
            return int(os.environ["OMP_NUM_THREADS"])
        try:
            cores = sorted(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            return os.cpu_count() or 1
        idle = idle_cores(cores)
        return len(cores) if idle is None else max(1, min(len(cores), round(idle)))
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise GenlabError(f"{flag}: {value!r} is neither a number of threads nor 'auto'") from None
    if n < 1:
        raise GenlabError(f"{flag}: {n} threads; give at least 1, or 'auto'")
    return n


def idle_cores(cores: list[int], window: float = 0.1) -> float | None:
    """How many of `cores` sat idle over `window` seconds (their idle and iowait time in /proc/stat), or None
    where that cannot be read."""
    import time

    def snapshot() -> dict[int, tuple[int, int]]:
        out = {}
        with open("/proc/stat") as f:
            for line in f:
                name, *fields = line.split()
                if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores:
                    ticks = [int(x) for x in fields[:8]]
                    out[int(name[3:])] = (ticks[3] + ticks[4], sum(ticks))  # (idle + iowait, all)
        return out

    try:
        before = snapshot()
        time.sleep(window)
        after = snapshot()
    except (OSError, ValueError, IndexError):
        return None
    idle = 0.0
    for core, (was_idle, was_all) in before.items():
        now_idle, now_all = after.get(core, (was_idle, was_all))
        idle += (now_idle - was_idle) / (now_all - was_all) if now_all > was_all else 1.0
    return idle if before else None


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
