"""Text: a file, a folder of files or a named corpus, modelled by characters or BPE tokens."""

from __future__ import annotations

from pathlib import Path

from genlab.core.config import RunConfig
from genlab.datasets.named import resolve_data
from genlab.core.files import read_text_file
from genlab.datasets.text import read_text_pieces, select_files
from genlab.core.errors import GenlabError
from genlab.tasks.sequence import SequenceGenerator, SequenceTask


class TextSource:
    separator = "\n\n"

    def files(self, config: RunConfig, progress: bool = True) -> list[Path]:
        root, include, exclude = resolve_data(config.data, progress)
        files = select_files(root, include, exclude)
        if not files:
            raise GenlabError(f"{root}: no files match (check data.include / data.exclude)")
        if root.is_file() and root.stat().st_size == 0:
            raise GenlabError(f"{root}: the file is empty")
        return files

    def read(self, path: Path) -> str:
        return read_text_file(path)

    def pieces(self, path: Path):
        return read_text_pieces(path)


class TextGenerator(SequenceGenerator):
    modality = "text"


TASK = SequenceTask("text", TextSource(), TextGenerator)
