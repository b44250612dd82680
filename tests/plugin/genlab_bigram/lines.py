"""A task from outside genlab: "lines", for data where every line is one example (names, titles, commit
messages). Training reads each file's distinct non-empty lines as documents; a sample is one line.

A task is a module with a `TASK` object (genlab.tasks.driver describes the protocol). This one reuses genlab's
sequence stack: only where documents come from and where a sample ends are its own.
"""

from __future__ import annotations

from pathlib import Path

from genlab.core.files import read_text_file
from genlab.tasks.sequence import SequenceTask
from genlab.tasks.text import TextGenerator, TextSource


class LinesSource(TextSource):
    separator = "\n"  # documents are joined line after line
    pieces = None  # a file is read whole: its lines are deduplicated across it

    def read(self, path: Path) -> str:
        lines = (line.strip() for line in read_text_file(path).splitlines())
        return "\n".join(dict.fromkeys(line for line in lines if line))  # distinct, in first-seen order


class LinesGenerator(TextGenerator):
    def default_stop(self) -> list[str]:
        return ["\n"]  # one line per sample


TASK = SequenceTask("lines", LinesSource(), LinesGenerator)
