"""Text sources: one file or a folder of files, read strictly as UTF-8."""

from __future__ import annotations

import fnmatch
from pathlib import Path

from genlab.core.errors import GenlabError
from genlab.core.files import neither_file_nor_folder
from genlab.core.progress import progress_bar


def _matches(rel: str, patterns: list[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)


def select_files(root: Path, include: list[str] | None = None, exclude: list[str] | None = None) -> list[Path]:
    """Files under `root` (recursive, sorted, hidden files and folders skipped) filtered by globs.

    A pattern matches the path relative to `root` (`docs/*.md`) or the bare file name (`*.md`).
    """
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise GenlabError(neither_file_nor_folder(root))
    files = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in rel.split("/")) or not path.is_file():
            continue
        if include and not _matches(rel, include):
            continue
        if exclude and _matches(rel, exclude):
            continue
        files.append(path)
    return files


def usable_files(files: list[Path], problem, what: str, progress: bool = True) -> list[Path]:
    """The files for which `problem(path)` says nothing (None); each other one is skipped with a warning on
    stderr naming it and the problem. `what` names the kind in the progress bar ("MIDI", "audio")."""
    import sys

    usable = []
    for path in progress_bar(files, desc=f"checking {what}", unit="file", enabled=progress and len(files) >= 50):
        why = problem(path)
        if why:
            print(f"warning: skipping {path}: {why}", file=sys.stderr)
            continue
        usable.append(path)
    return usable


def read_text_pieces(path: Path, piece_bytes: int = 1 << 20):
    """Yield the file's text in pieces of about `piece_bytes`, each ending at a line break
    where one is near, so that a file larger than memory is read with flat memory.
    Non-UTF-8 bytes are an error naming the file and the byte offset."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    carry = ""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise GenlabError(f"{path}: cannot read ({e.strerror})") from None
    with f:
        while True:
            block = f.read(piece_bytes)
            try:
                text = decoder.decode(block, final=not block)
            except UnicodeDecodeError as e:
                raise GenlabError(f"{path}: not UTF-8 text (bad byte 0x{block[e.start]:02x} at offset {offset + e.start})") from None
            offset += len(block)
            text = carry + text
            if not block:
                if text:
                    yield text
                return
            cut = text.rfind("\n") + 1  # keep a partial last line for the next piece
            carry, text = (text[cut:], text[:cut]) if cut else ("", text)
            if text:
                yield text
