"""Atomic file writes (a reader sees the old file or the new one, never half of one), and reading a text file
a user names, with one-line errors."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

from genlab.core.errors import GenlabError


def neither_file_nor_folder(path: Path) -> str:
    """The one line for a path given as data that is neither a regular file nor a folder: missing, or a device
    or pipe (/dev/zero never ends, a pipe blocks, and data is read more than once)."""
    return f"{path}: {'not a regular file or folder' if Path(path).exists() else 'no such file or folder'}"


def read_text_file(path: Path) -> str:
    """The file's text. Missing, unreadable or non-UTF-8 (naming the byte offset) is one line naming the file;
    so is anything but a regular file: /dev/zero would be read until memory ran out, and a pipe waits for a
    writer that may never come."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # before opening: opening a pipe waits for its writer
            raise GenlabError(f"{path}: not a regular file")
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise GenlabError(f"{path}: no such file") from None
    except OSError as e:
        raise GenlabError(f"{path}: cannot read ({e.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise GenlabError(f"{path}: not UTF-8 text (bad byte 0x{data[e.start]:02x} at offset {e.start})") from None


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in the folder `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never half.

    `durable` also fsyncs the file and its folder, so the write survives a power cut, not only a crash
    of the process (a few milliseconds; skipped where losing the file is harmless)."""
    path = Path(path)
    if path.exists() and not path.is_file():  # the rename would put a file in place of a device (/dev/null) or a pipe
        raise GenlabError(f"{path}: exists and is not a regular file; refusing to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str, durable: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), durable)


def atomic_write_json(path: Path, obj, durable: bool = True) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n", durable)
