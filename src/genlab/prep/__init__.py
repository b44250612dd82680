"""Data preparation: a messy table or folder in, a clean, split, documented dataset out.

`prepare(source, out, **options)` runs the pipeline (genlab.prep.pipeline has the
step order and the passes; docs/prep.md the options); `report(folder)`
summarizes the result. `genlab data prepare|report` are these two functions.
"""

import os

# Before Polars loads: its allocator (jemalloc) otherwise hands freed pages back to the kernel within
# milliseconds, and the next chunk faults them in afresh. Kept ten seconds, a 0.2 GB CSV took half the page
# faults and 7-15 % less time, for 50 MiB more peak memory (BENCHMARKS.md, "Data preparation"). A value the
# user set wins.
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:10000,muzzy_decay_ms:10000")

from genlab.prep.pipeline import prepare  # noqa: E402 - after the allocator's setting
from genlab.prep.report import format_report, report  # noqa: E402

__all__ = ["format_report", "prepare", "report"]
