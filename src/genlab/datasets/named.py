"""Named datasets: built offline from what an installed package ships, or
downloaded once into the cache and checked by sha256.

Each entry maps a name to "module:function"; the function takes the cache
folder and returns a local path (a file or folder) that the modality's
source reader understands. A name that is also an existing path is a path.
"""

from __future__ import annotations

import ast
import importlib
import os
import sys
import sysconfig
from pathlib import Path

from platformdirs import user_cache_dir

from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write_text
from genlab.core.progress import progress_bar
from genlab.datasets.download import fetch
from genlab.datasets.records import is_records, records_text
from genlab.datasets.text import select_files

TINYSHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"

NAMED_DATASETS: dict[str, str] = {
    "python-docs": "genlab.datasets.named:build_python_docs",
    "python-stdlib": "genlab.datasets.named:stdlib_dir",
    "tinyshakespeare": "genlab.datasets.named:fetch_tinyshakespeare",
    "digits": "genlab.datasets.images:build_digits",
    "mnist": "genlab.datasets.images:fetch_mnist",
    "fashion-mnist": "genlab.datasets.images:fetch_fashion_mnist",
    "cifar10": "genlab.datasets.images:fetch_cifar10",
    "bach": "genlab.datasets.midi:build_bach",
    "bach-audio": "genlab.datasets.audio:build_bach_audio",
}

# Files under the stdlib folder that are not the standard library proper.
STDLIB_EXCLUDE = ["site-packages/*", "dist-packages/*", "test/*", "*/test/*", "*/tests/*", "idlelib/*", "lib2to3/*", "__pycache__/*"]


def cache_dir() -> Path:
    """$GENLAB_CACHE, else the user's cache dir (e.g. ~/.cache/genlab)."""
    return Path(os.environ.get("GENLAB_CACHE") or user_cache_dir("genlab"))


def resolve_source(source: str, progress: bool = True) -> Path:
    """`--data` value -> an existing local path (building or downloading named datasets)."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    if source in NAMED_DATASETS:
        module, func = NAMED_DATASETS[source].split(":")
        builder = getattr(importlib.import_module(module), func)
        return builder(cache_dir(), progress=progress)
    if not source:
        raise GenlabError("data.source is empty: pass --data FILE, FOLDER or a dataset name")
    raise GenlabError(f"{source}: no such file or folder, and not a named dataset (known: {', '.join(NAMED_DATASETS)})")


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files() -> list[Path]:
    """The running Python's standard library modules (.py), sorted, tests and vendored code left out."""
    return select_files(stdlib_root(), include=["*.py"], exclude=STDLIB_EXCLUDE)


def stdlib_dir(cache: Path, progress: bool = True) -> Path:
    """`python-stdlib`: the source code of the running Python's standard library.

    Returned as the folder itself; readers apply STDLIB_EXCLUDE via `default_filters`.
    """
    return stdlib_root()


def _docstrings(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc and len(doc) >= 40 and doc.isascii():
                found.append(doc)
    return found


def build_python_docs(cache: Path, progress: bool = True) -> Path:
    """`python-docs`: English docstrings of the standard library, one per paragraph block.

    Extracted offline with `ast` from the running Python's sources and cached
    per Python version, so a second call costs nothing.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    dest = cache / f"python-docs-{version}.txt"
    if dest.is_file():
        return dest
    docs: list[str] = []
    for path in progress_bar(stdlib_files(), desc="extracting docstrings", unit="file", enabled=progress):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue  # a few stdlib files are deliberately broken or not UTF-8
        docs.extend(_docstrings(tree))
    if not docs:
        raise GenlabError(f"{stdlib_root()}: no docstrings found to build python-docs")
    atomic_write_text(dest, "\n\n".join(docs) + "\n")
    return dest


def fetch_tinyshakespeare(cache: Path, progress: bool = True) -> Path:
    """`tinyshakespeare`: Karpathy's 1 MB Shakespeare corpus, downloaded once.

    GENLAB_TINYSHAKESPEARE_URL points the download elsewhere (a mirror, or a
    local server in tests); the sha256 check stays.
    """
    url = os.environ.get("GENLAB_TINYSHAKESPEARE_URL", TINYSHAKESPEARE_URL)
    return fetch(url, cache / "tinyshakespeare.txt", TINYSHAKESPEARE_SHA256, max_bytes=4 << 20, progress=progress)  # it is 1.1 MB


def resolve_data(data, progress: bool = True) -> tuple[Path, list[str], list[str]]:
    """A DataConfig -> (local root, include globs, exclude globs); a named dataset's own
    filters apply when the user gave none."""
    if is_records(data.source, data.column):  # rows of a table or dataset, written once as a text file
        return records_text(data.source, data.column or "text", data.dataset_split, cache_dir(), progress), [], []
    root = resolve_source(data.source, progress)
    include, exclude = data.include, data.exclude
    if not include and not exclude:
        include, exclude = default_filters(data.source)
    return root, include, exclude


def default_filters(source: str) -> tuple[list[str], list[str]]:
    """(include, exclude) patterns a named dataset implies when the user gave none."""
    if source == "python-stdlib":
        return ["*.py"], STDLIB_EXCLUDE
    return [], []
