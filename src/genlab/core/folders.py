"""Folders genlab owns: the one place that creates, resumes, replaces or deletes an output folder.

Every folder a command creates carries a marker file, `.genlab`, written at creation (JSON: the genlab
version and the folder's kind: run, prepared, eval-code, compare, demo). Only a marked folder is ever
resumed, emptied or replaced; anything else a user points `--out` at is refused with one line and left
exactly as it was. Replacing builds the new content beside the old and swaps it in with renames.

    claim(path, kind, overwrite=..., inputs=...) -> True when it already was a genlab folder of `kind`
    empty(path)                                   a marked folder, emptied (its marker kept)
    remove(path)                                  the only deletion: a marked folder, or a path inside one
    with replacing(dest, kind) as work: ...       build a whole folder beside, then swap it in at once
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write_json

MARKER = ".genlab"


def marker_kind(path: Path) -> str | None:
    """The kind a genlab folder was made as, or None when `path` is not a folder genlab made."""
    marker = Path(path) / MARKER
    if not marker.is_file():
        return None
    try:
        return str(json.loads(marker.read_text(encoding="utf-8"))["kind"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@lru_cache(maxsize=1)
def _genlab_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("genlab")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def mark(path: Path, kind: str) -> None:
    made_by = _genlab_version()
    # Not fsynced: a marker lost to a power cut makes genlab refuse the folder, the safe side, and the
    # sandbox writes one per candidate.
    atomic_write_json(Path(path) / MARKER, {"genlab": made_by, "kind": kind}, durable=False)


def _protected(path: Path) -> str | None:
    """Why `path` may never be a command's output folder (None when it may)."""
    resolved = path.resolve()
    for name, place in (("the current folder", Path.cwd()), ("your home folder", Path.home())):
        place = place.resolve()
        if resolved == place or place.is_relative_to(resolved):
            return f"is {name}" if resolved == place else f"holds {name}"
    return None


def check_target(path: Path, inputs=(), flag: str = "--out") -> None:
    """Refuse an output folder that is a file, the current or home folder (or above them), or that
    holds or lies inside one of the command's inputs: nothing has been touched when this raises."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise GenlabError(f"{flag} {path}: is a file, not a folder; choose another {flag}")
    why = _protected(path)
    if why:
        raise GenlabError(f"{flag} {path}: {why}; choose a new folder for {flag}")
    resolved = path.resolve()
    for item in inputs:
        if item is None or not Path(item).exists():
            continue
        src = Path(item).resolve()
        if src.is_relative_to(resolved):
            raise GenlabError(f"{flag} {path}: holds the input {item}; choose another {flag}")
        if src.is_dir() and resolved.is_relative_to(src):
            raise GenlabError(f"{flag} {path}: lies inside the input folder {item}; choose another {flag}")


def claim(path: Path | str, kind: str, *, overwrite: bool = False, inputs=(), flag: str = "--out") -> bool:
    """Make `path` a genlab folder of `kind`; True when it already was one (to resume or update).

    Absent or empty: created and marked. Marked as `kind`: kept (emptied first with `overwrite`).
    Marked as another kind: refused unless `overwrite`. Anything else: refused, never deleted."""
    path = Path(path)
    check_target(path, inputs, flag)
    if not path.exists() or not any(path.iterdir()):
        path.mkdir(parents=True, exist_ok=True)
        mark(path, kind)
        return False
    found = marker_kind(path)
    if found is None:
        hint = " (--overwrite deletes only folders genlab made)" if overwrite else ""
        raise GenlabError(f"{flag} {path}: holds files genlab did not make (no {MARKER} marker); "
                          f"choose a new folder{hint}")
    if found != kind and not overwrite:
        raise GenlabError(f"{flag} {path}: is a genlab {found} folder, not a {kind} folder; "
                          f"pass --overwrite to replace it or choose another {flag}")
    if overwrite:
        empty(path, kind)
        return False
    return True


def _aside(path: Path) -> Path:
    """A fresh name beside `path` for moving it out of the way (same file system: a rename)."""
    return Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-", suffix=".tmp"))


def owned(path: Path) -> bool:
    """Whether `path` is a folder genlab made or lies inside one (the marker is on it or above it)."""
    return any(marker_kind(p) is not None for p in (Path(path).absolute(), *Path(path).absolute().parents))


def remove(path: Path | str) -> None:
    """Delete `path` (a folder or a file) — the one place genlab deletes anything it did not just
    write itself — and only when genlab owns it; anything else is refused, never deleted."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if not owned(path):
        raise GenlabError(f"{path}: refusing to delete what genlab did not make")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def empty(path: Path, kind: str | None = None) -> None:
    """Replace the marked folder `path` by an empty one, marked as `kind` (default: its own kind)."""
    path = Path(path)
    kind = kind or marker_kind(path)
    if marker_kind(path) is None:
        raise GenlabError(f"{path}: refusing to empty a folder genlab did not make")
    old = _aside(path)
    os.replace(path, old)  # onto the fresh empty folder mkdtemp made: one atomic step
    path.mkdir()
    mark(path, kind)
    remove(old)


@contextmanager
def replacing(dest: Path | str, kind: str):
    """`with replacing(dest, kind) as work:` fill the fresh marked folder `work`; when the block ends
    without an error it takes `dest`'s place at once, and on an error it is removed and `dest` is
    left as it was. `dest` must have been claimed (absent, empty or marked)."""
    work = build_beside(dest, kind)
    try:
        yield work
    except BaseException:
        discard(work)
        raise
    swap_in(work, Path(dest))


def build_beside(dest: Path | str, kind: str) -> Path:
    """A fresh marked folder beside `dest`, to fill and then `swap_in`."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    mark(work, kind)
    return work


def swap_in(new: Path, dest: Path) -> None:
    """Put the finished folder `new` at `dest`; what `dest` held goes. `dest` must be absent, empty or
    genlab's own: anything else is refused before a single rename."""
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()) and not owned(dest):
        raise GenlabError(f"{dest}: holds files genlab did not make; refusing to replace it")
    old = None
    if dest.exists():
        old = _aside(dest)
        os.replace(dest, old)
    os.replace(new, dest)
    if old is not None:
        old.rmdir() if not any(old.iterdir()) else remove(old)


def discard(work: Path) -> None:
    """Remove a folder made by `build_beside` after a failure."""
    remove(work)


# How a file of each kind genlab writes begins: an existing file is replaced only if it is of that kind.
_MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "midi": b"MThd", "wav": b"RIFF", "npy": b"\x93NUMPY"}


def check_output_file(path: Path | str, kind: str, flag: str = "--out") -> None:
    """Refuse to write a file of `kind` (text, png, midi, wav, npy) over a folder or over a file of another kind."""
    path = Path(path)
    if path.is_dir():
        raise GenlabError(f"{flag} {path}: is a folder; give a file name")
    if not path.exists():
        return
    if not path.is_file():  # a device or a pipe: `--out /dev/null` once replaced the device with a file (as root)
        raise GenlabError(f"{flag} {path}: exists and is not a regular file; refusing to replace it")
    with open(path, "rb") as f:
        head = f.read(8192)
    if kind == "text":
        try:
            same = b"\0" not in head and (head.decode("utf-8") or True)
        except UnicodeDecodeError as e:
            same = e.start > len(head) - 4  # a character cut by the 8 KiB window
    else:
        same = head.startswith(_MAGIC[kind])
    if not same:
        raise GenlabError(f"{flag} {path}: exists and is not a {kind} file; refusing to replace it")
