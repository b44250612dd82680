"""Data preparation: a messy table or folder in, a clean, split, documented dataset out.

`prepare(source, out, **options)` runs the pipeline (genlab.prep.pipeline has the
step order and the passes; docs/prep.md the options); `report(folder)`
summarizes the result. `genlab data prepare|report` are these two functions.
"""

from genlab.prep.pipeline import prepare
from genlab.prep.report import format_report, report

__all__ = ["format_report", "prepare", "report"]
