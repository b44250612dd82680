"""Text from records: one column of a Hugging Face `datasets` dataset (`--data hf:PATH_OR_NAME`: a folder written
by `save_to_disk`, a dataset folder, or a name already in the local cache) or of a .jsonl, .parquet or .csv file
(`--data FILE --set data.column=NAME`). Each row is a document.

The column is read in batches and written once to a text file in genlab's cache (documents separated by a blank
line), which the text and code tasks then read like any file: memory stays flat however large the dataset.
Nothing is downloaded: Hugging Face's offline mode is on unless the user's environment sets
HF_DATASETS_OFFLINE=0.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write_text
from genlab.core.progress import progress_bar
from genlab.datasets.images import ImageSource, image_pixels

TABLES = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
SEPARATOR = "\n\n"
BATCH = 1024


def is_records(source: str, column: str | None) -> bool:
    return source.startswith("hf:") or column is not None


def is_table(source: str) -> bool:
    """A .jsonl, .parquet or .csv file: rows with columns, read through `datasets` (images by their column too)."""
    return Path(source).suffix.lower() in TABLES


def unreadable(source: str, error: Exception) -> GenlabError:
    """A reader's own error (pyarrow, pandas, datasets: many types) as one line naming the source."""
    if isinstance(error, StopIteration):
        return GenlabError(f"{source}: no rows")
    detail = (str(error).strip().splitlines() or [""])[0][:200]
    return GenlabError(f"{source}: unreadable ({type(error).__name__}: {detail})")


def open_dataset(source: str, split: str, streaming: bool = True):
    """The split of the dataset `source` names, iterable in batches (or, not streaming, a table file converted once
    to a memory-mapped dataset that rows can be read from by index); the library's errors become one line."""
    try:
        return _open_dataset(source, split, streaming)
    except GenlabError:
        raise
    except Exception as e:  # noqa: BLE001  (pyarrow, pandas and datasets each raise their own)
        raise unreadable(source, e) from None


def _open_dataset(source: str, split: str, streaming: bool = True):
    """(`datasets` is imported here: only runs that read records need it.)"""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # a name is looked up in the local cache, never fetched
    try:
        import datasets
    except ModuleNotFoundError:
        raise GenlabError(f"{source}: reading datasets needs the `datasets` package (pip install datasets)") from None
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # its own error lines would repeat ours
    if source.startswith("hf:"):
        where = source.removeprefix("hf:")
        if not where.strip():
            raise GenlabError(f"--data {source!r}: name a dataset folder or a dataset in the local cache after hf:")
        if Path(where).expanduser().is_dir() and any(Path(where).expanduser().glob("*.json")):
            try:
                found = datasets.load_from_disk(str(Path(where).expanduser()))
            except FileNotFoundError:
                found = datasets.load_dataset(str(Path(where).expanduser()), streaming=True)
        else:
            try:
                found = datasets.load_dataset(where, streaming=True)
            except Exception as e:  # the library's own errors for a name it cannot find offline
                raise GenlabError(f"{source}: no such dataset folder, and not a dataset in the local Hugging Face cache "
                                  f"({type(e).__name__}); save one with Dataset.save_to_disk and pass its folder") from None
    else:
        path = Path(source).expanduser()
        kind = TABLES.get(path.suffix.lower())
        if kind is None:
            raise GenlabError(f"{source}: data.column reads .jsonl, .parquet and .csv files (or --data hf:DATASET), "
                              f"not {path.suffix or 'a file without a suffix'}")
        if not path.is_file():
            raise GenlabError(f"{source}: no such file")
        found = datasets.load_dataset(kind, data_files=str(path), split="train", streaming=streaming)
    if isinstance(found, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if split not in found:
            raise GenlabError(f"{source}: no split {split!r} (data.dataset_split; the dataset has: {', '.join(found)})")
        found = found[split]
    return found


def column_texts(source: str, column: str, split: str = "train") -> Iterator[str]:
    """The column's values, row by row (None and empty rows left out); a missing column or split is an error
    here, before anything is read."""
    data = open_dataset(source, split)
    try:  # a streamed table knows its columns once its first rows are read
        names = list(data.column_names or next(iter(data)).keys())
    except Exception as e:  # noqa: BLE001  (the reader's own error for a malformed first row; no rows at all)
        raise unreadable(source, e) from None
    if column not in names:
        raise GenlabError(f"{source}: no column {column!r} (data.column; the columns: {', '.join(names)})")

    def rows():
        for batch in data.select_columns([column]).iter(batch_size=BATCH):
            for value in batch[column]:
                if value is not None and str(value).strip():
                    yield str(value)

    return rows()


def fingerprint(source: str, column: str, split: str) -> str:
    """What identifies the text made of a column: the source (a file's or folder's size and time), column, split."""
    where = Path(source.removeprefix("hf:")).expanduser()
    stamp = ""
    if where.exists():
        files = [where] if where.is_file() else sorted(p for p in where.rglob("*") if p.is_file())
        stamp = ";".join(f"{p.relative_to(where.parent)}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
        source = str(where.resolve())
    return hashlib.sha256(f"{source}|{column}|{split}|{stamp}".encode()).hexdigest()[:16]


def records_text(source: str, column: str, split: str, cache: Path, progress: bool = True) -> Path:
    """The column as one text file in the cache (written once per source, column and split)."""
    dest = Path(cache) / "records" / f"{fingerprint(source, column, split)}.txt"
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    texts = column_texts(source, column, split)
    partial = dest.with_suffix(f".{os.getpid()}.partial")
    rows = 0
    bar = progress_bar(desc=f"reading {source} [{column}]", unit="row", enabled=progress)
    try:
        with open(partial, "w", encoding="utf-8") as f:
            for text in texts:
                if rows:
                    f.write(SEPARATOR)
                f.write(text)
                rows += 1
                bar.update(1)
        if rows == 0:
            raise GenlabError(f"{source}: column {column!r} holds no text")
        os.replace(partial, dest)
    except BaseException as e:  # nothing half-written stays, whatever stopped it (Ctrl-C too)
        partial.unlink(missing_ok=True)
        if isinstance(e, Exception) and not isinstance(e, GenlabError):  # a malformed row further in
            raise unreadable(source, e) from None
        raise
    finally:
        bar.close()
    atomic_write_text(dest.with_suffix(".source"), f"{source} [{column}] {split}: {rows} rows\n")
    return dest


def to_pixels(value, where: str, folder: Path | None = None) -> np.ndarray:
    """A dataset's image cell (a PIL image, {"bytes", "path"}, an array, or in a table file a path relative to the
    table's folder) -> (H, W, C) uint8, C 1 or 3."""
    from PIL import Image, UnidentifiedImageError

    try:
        if isinstance(value, str) and folder is not None:
            value = Image.open(folder / value)
        if isinstance(value, dict):
            value = Image.open(io.BytesIO(value["bytes"])) if value.get("bytes") else Image.open(value["path"])
        if isinstance(value, Image.Image):
            return image_pixels(value)
        pixels = np.asarray(value)
    except (UnidentifiedImageError, OSError, KeyError, TypeError, ValueError, Image.DecompressionBombError) as e:
        raise GenlabError(f"{where}: not an image ({type(e).__name__})") from None
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
        raise GenlabError(f"{where}: not an 8-bit image (an array of {pixels.dtype}, {pixels.ndim} dimensions)")
    return pixels[..., None] if pixels.ndim == 2 else pixels


def dataset_images(source: str, image_column: str, label_column: str | None, split: str = "train"):
    """A saved Hugging Face dataset's images (and labels), or a table file's (.parquet, .jsonl, .csv: image bytes or
    paths relative to the file), as an ImageSource read row by row as the store is built (memory-mapped: flat
    memory). Labels of a ClassLabel column keep its names; other labels become classes in sorted order."""
    data = open_dataset(source, split, streaming=False)
    if not hasattr(data, "__getitem__"):
        raise GenlabError(f"{source}: images are read from a dataset saved with save_to_disk (--data hf:FOLDER)")
    folder = None if source.startswith("hf:") else Path(source).expanduser().parent
    names = list(data.column_names)
    for column, field in ((image_column, "data.image_column"), (label_column, "data.label_column")):
        if column is not None and column not in names:
            raise GenlabError(f"{source}: no column {column!r} ({field}; the columns: {', '.join(names)})")
    if len(data) == 0:
        raise GenlabError(f"{source}: the {split!r} split holds no rows")
    labels = classes = None
    if label_column is not None:
        feature = data.features[label_column]
        values = data[label_column]
        if hasattr(feature, "names"):  # a ClassLabel: ids with names
            labels, classes = np.asarray(values, dtype=np.int64), list(feature.names)
        else:
            classes = sorted({str(v) for v in values})
            index = {name: i for i, name in enumerate(classes)}
            labels = np.asarray([index[str(v)] for v in values], dtype=np.int64)
    images = data.select_columns([image_column])
    read = lambda i: to_pixels(images[int(i)][image_column], f"{source} row {i}", folder)  # noqa: E731
    return ImageSource(len(data), read, labels, classes, tuple(read(0).shape))
