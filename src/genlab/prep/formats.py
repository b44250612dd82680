"""Table files in and out: CSV, JSON (an array of objects), JSONL, Parquet and HDF5.

Every reader yields the input in chunks of at most `chunk_rows` rows, each with
how far into the input it has come (bytes, or rows where the file does not
say), so that a file larger than memory passes through with bounded memory.
CSV, JSONL, Parquet and HDF5 really stream; a JSON array is parsed whole (the
format has no record boundaries to stop at).

CSV chunks hold text (pandas' default markers like "", NA, null become
missing; a row with no value at all is skipped); the others hold Python values. `genlab.prep.schema` turns either
into typed columns.

Every writer is opened with the output schema, takes coerced chunks in order
and writes the same bytes for the same chunks: no timestamps, floats in
shortest round-trip form.

HDF5 layout (written, and read back): a group `columns` with one 1-D dataset
per column (int64, float64, bool or UTF-8 strings), a group `missing` with a
bool mask per int, bool and string column (floats use NaN), and a root
attribute `columns` with the column order as a JSON list. A foreign HDF5 file
is read when its root holds 1-D datasets of equal length, one per column.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from genlab.core.errors import GenlabError
from genlab.prep.clean import rust_class, whitespace_chars
from genlab.prep.schema import ARROW_TYPES, TIME_KINDS, Schema, arrow_schema, pandas_frame, value_text

Chunks = Iterator[tuple[pd.DataFrame, int]]  # (chunk, progress so far in the format's unit)

BLOCK_ROWS = 65_536  # rows per Parquet row group, and per HDF5 write
HDF5_CHUNK = 8192  # rows per HDF5 storage chunk: fixed, so that the bytes depend only on the data
HDF5_TIME_UNITS = {"date": "days", "datetime": "microseconds"}  # HDF5 has no time type: counts since EPOCH
EPOCH = dt.date(1970, 1, 1)


def typed_frame(records: list[dict], columns: list[str] | None = None) -> pd.DataFrame:
    """Records (dicts of Python values) as a frame of object columns.

    Columns are `columns` if given, else the keys in order of first appearance.
    """
    if columns is None:
        columns = list(dict.fromkeys(key for record in records for key in record))
    return pd.DataFrame({c: pd.Series([r.get(c) for r in records], dtype=object) for c in columns})


def column_values(values: pd.Series) -> list:
    """A coerced column as Python values, None where missing."""
    return values.to_numpy(dtype=object, na_value=None).tolist()


# ---- readers ----


def _first_bad_utf8_line(path: Path) -> int:
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0


def _csv_error(path: Path, error: Exception) -> GenlabError:
    message = " ".join(str(error).split())
    fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message)
    if fields:
        expected, line, saw = fields.groups()
        return GenlabError(f"{path}: line {line}: expected {expected} fields, saw {saw}")
    return GenlabError(f"{path}: not readable as CSV ({message.removeprefix('Error tokenizing data. ')})")


def read_csv(path: Path, chunk_rows: int) -> Chunks:
    with open(path, "rb") as f:
        try:
            for chunk in pd.read_csv(f, chunksize=chunk_rows, dtype=object, encoding="utf-8"):
                # A row without a single value is skipped, as a blank line is (so both engines count rows alike).
                yield chunk.dropna(how="all").reset_index(drop=True), f.tell()
        except UnicodeDecodeError:
            raise GenlabError(f"{path}: line {_first_bad_utf8_line(path)}: not UTF-8 text") from None
        except pd.errors.EmptyDataError:
            raise GenlabError(f"{path}: empty file (no header row)") from None
        except pd.errors.ParserError as e:
            raise _csv_error(path, e) from None


def read_jsonl(path: Path, chunk_rows: int) -> Chunks:
    records: list[dict] = []
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"))  # decoded here: json's own detection is slower
            except UnicodeDecodeError:
                raise GenlabError(f"{path}: line {number}: not UTF-8 text") from None
            except json.JSONDecodeError as e:
                raise GenlabError(f"{path}: line {number}: not valid JSON ({e.msg} at column {e.pos + 1})") from None
            except RecursionError:  # json's parser recurses: thousands of nested arrays exhaust its stack
                raise GenlabError(f"{path}: line {number}: JSON nested too deeply") from None
            if not isinstance(record, dict):
                raise GenlabError(f"{path}: line {number}: expected a JSON object, got {type(record).__name__}")
            records.append(record)
            if len(records) == chunk_rows:
                yield typed_frame(records), f.tell()
                records = []
        if records:
            yield typed_frame(records), f.tell()


def read_json(path: Path, chunk_rows: int) -> Chunks:
    try:
        with open(path, "rb") as f:
            items = json.load(f)
    except UnicodeDecodeError:
        raise GenlabError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise GenlabError(f"{path}: line {e.lineno} column {e.colno}: not valid JSON ({e.msg})") from None
    except RecursionError:
        raise GenlabError(f"{path}: JSON nested too deeply") from None
    if not isinstance(items, list):
        raise GenlabError(f"{path}: expected a JSON array of objects, got {type(items).__name__}")
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise GenlabError(f"{path}: item {number}: expected a JSON object, got {type(item).__name__}")
    # Every chunk gets every column, so that the column order is the file's, not the chunk's.
    columns = list(dict.fromkeys(key for item in items for key in item))
    for start in range(0, len(items), chunk_rows):
        chunk = typed_frame(items[start : start + chunk_rows], columns)
        yield chunk, start + len(chunk)


def read_parquet(path: Path, chunk_rows: int) -> Chunks:
    try:
        parquet = pq.ParquetFile(path)
        done = 0
        for batch in parquet.iter_batches(batch_size=chunk_rows):
            columns = {name: pd.Series(batch.column(i).to_pylist(), dtype=object) for i, name in enumerate(batch.schema.names)}
            done += batch.num_rows
            yield pd.DataFrame(columns), done
    except (pa.ArrowException, OSError) as e:
        raise GenlabError(f"{path}: not a readable Parquet file ({' '.join(str(e).split())})") from None


def _hdf5_columns(f: h5py.File, path: Path) -> tuple[h5py.Group, list[str]]:
    group = f["columns"] if isinstance(f.get("columns"), h5py.Group) else f
    names = json.loads(f.attrs["columns"]) if "columns" in f.attrs else sorted(group)
    for name in names:
        if name not in group or not isinstance(group[name], h5py.Dataset) or group[name].ndim != 1:
            raise GenlabError(f"{path}: column {name!r} is not a 1-D dataset")
    lengths = {group[name].shape[0] for name in names}
    if len(lengths) > 1:
        raise GenlabError(f"{path}: columns have different lengths {sorted(lengths)}")
    return group, names


def from_epoch_counts(counts: list, kind: str) -> list:
    """What `Hdf5Writer` wrote for a date or date-time column (days or microseconds), read back as such."""
    if kind == "date":
        return [EPOCH + dt.timedelta(days=int(c)) for c in counts]
    return list(pd.to_datetime(np.asarray(counts, dtype="i8"), unit="us"))


def read_hdf5(path: Path, chunk_rows: int) -> Chunks:
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise GenlabError(f"{path}: not a readable HDF5 file ({e})") from None
    with f:
        group, names = _hdf5_columns(f, path)
        rows = group[names[0]].shape[0] if names else 0
        masks = f.get("missing", {})
        for start in range(0, rows, chunk_rows):
            stop = min(start + chunk_rows, rows)
            columns = {}
            for name in names:
                dataset = group[name]
                try:
                    values = dataset.asstr()[start:stop] if h5py.check_string_dtype(dataset.dtype) else dataset[start:stop]
                except UnicodeDecodeError:
                    raise GenlabError(f"{path}: column {name!r}: not UTF-8 text in rows {start + 1}-{stop}") from None
                values = values.tolist()
                if dataset.attrs.get("kind") in HDF5_TIME_UNITS:  # written by genlab: times, not counts
                    values = from_epoch_counts(values, dataset.attrs["kind"])
                if name in masks:
                    values = [None if m else v for v, m in zip(values, masks[name][start:stop])]
                columns[name] = pd.Series(values, dtype=object)
            yield pd.DataFrame(columns), stop


# ---- writers ----
# Each has write(chunk), close() and sha256 (its file's, once closed).


class HashedFile(io.RawIOBase):
    """A file being written that works out its sha256 on the way, so that pipeline.json need not read the
    outputs back (1.5 s of a 2 GB CSV's run, measured)."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self.file = open(path, "wb")
        self.digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        try:
            self.file.write(data)
        except OSError as e:  # a full disk, say: name the file, which a write on an open file does not
            raise OSError(e.errno, e.strerror, str(self.path)) from None
        self.digest.update(data)
        return memoryview(data).nbytes

    def tell(self) -> int:
        return self.file.tell()

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        super().close()  # flushes first
        self.file.close()

    @property
    def sha256(self) -> str:
        return self.digest.hexdigest()


def hashed_text(path: Path, newline: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(HashedFile(path), encoding="utf-8", newline=newline)


class CsvWriter:
    def __init__(self, path: Path, schema: Schema):
        self.kinds = schema
        self.file = hashed_text(path, newline="")
        pd.DataFrame(columns=list(schema)).to_csv(self.file, index=False, lineterminator="\n")

    @property
    def sha256(self) -> str:
        return self.file.buffer.sha256

    def write(self, chunk: pd.DataFrame | pl.DataFrame) -> None:
        chunk = pandas_frame(chunk, self.kinds) if isinstance(chunk, pl.DataFrame) else chunk
        # Times as ISO 8601, each on its own (pandas would drop a chunk's times when all are midnight).
        times = {c: [None if pd.isna(v) else value_text(v) for v in chunk[c].tolist()]
                 for c, k in self.kinds.items() if k in TIME_KINDS}
        chunk.assign(**times).to_csv(self.file, index=False, header=False, lineterminator="\n")

    def close(self) -> None:
        self.file.close()


class JsonlWriter:
    def __init__(self, path: Path, schema: Schema):
        self.kinds = schema
        self.file = hashed_text(path, newline="\n")

    @property
    def sha256(self) -> str:
        return self.file.buffer.sha256

    def lines(self, chunk: pd.DataFrame | pl.DataFrame) -> Iterator[str]:
        chunk = pandas_frame(chunk, self.kinds) if isinstance(chunk, pl.DataFrame) else chunk
        columns = [column_values(chunk[c]) for c in chunk.columns]
        for row in zip(*columns):
            yield json.dumps(dict(zip(chunk.columns, row)), ensure_ascii=False, default=value_text)  # dates: ISO 8601 text

    def write(self, chunk: pd.DataFrame) -> None:
        self.file.writelines(line + "\n" for line in self.lines(chunk))

    def close(self) -> None:
        self.file.close()


class JsonWriter(JsonlWriter):
    """A JSON array, one object per line, written as it comes."""

    def __init__(self, path: Path, schema: Schema):
        super().__init__(path, schema)
        self.first = True

    def write(self, chunk: pd.DataFrame) -> None:
        for line in self.lines(chunk):
            self.file.write(("[\n" if self.first else ",\n") + line)
            self.first = False

    def close(self) -> None:
        self.file.write("[]\n" if self.first else "\n]\n")
        self.file.close()


def staging_schema(schema: Schema) -> pa.Schema:
    """The Arrow schema records wait in before a block is written: a category as plain text, so that each
    block's dictionary is built from that block's values alone."""
    return pa.schema([(c, pa.string() if k == "category" else ARROW_TYPES[k]) for c, k in schema.items()])


def arrow_table(chunk: pd.DataFrame | pl.DataFrame, staging: pa.Schema) -> pa.Table:
    """A coerced chunk of either engine as the same Arrow table (NaN, like a gap, is null)."""
    if isinstance(chunk, pd.DataFrame):
        return pa.Table.from_pandas(chunk, schema=staging, preserve_index=False)
    floats = [c for c, t in chunk.schema.items() if t == pl.Float64]
    return chunk.with_columns(pl.col(floats).fill_nan(None)).to_arrow().cast(staging)


class Blocks:
    """Takes chunks of any size (pandas or Polars) and hands them to `write_block` in blocks of BLOCK_ROWS rows
    (the last one shorter), as Arrow tables, so that a file's bytes depend only on its records, not on
    --chunk-rows or an engine's batches."""

    def __init__(self, schema: Schema, write_block: Callable[[pa.Table], None]):
        self.staging, self.write_block = staging_schema(schema), write_block
        self.pending: list[pa.Table] = []
        self.rows = 0

    def add(self, chunk: pd.DataFrame | pl.DataFrame) -> None:
        self.pending.append(arrow_table(chunk, self.staging))
        self.rows += len(chunk)
        if self.rows >= BLOCK_ROWS:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        rows = pa.concat_tables(self.pending)
        whole = len(rows) if final else len(rows) - len(rows) % BLOCK_ROWS
        for start in range(0, whole, BLOCK_ROWS):
            self.write_block(rows.slice(start, BLOCK_ROWS).combine_chunks())
        self.pending, self.rows = [rows.slice(whole)], len(rows) - whole

    def finish(self) -> None:
        if self.rows:
            self._flush(final=True)


class ParquetWriter:
    """One row group per block."""

    def __init__(self, path: Path, schema: Schema):
        self.schema = arrow_schema(schema)
        self.file = HashedFile(path)
        self.writer = pq.ParquetWriter(self.file, self.schema)
        self.blocks = Blocks(schema, lambda rows: self.writer.write_table(rows.cast(self.schema)))
        self.write = self.blocks.add

    def close(self) -> None:
        try:
            self.blocks.finish()
            self.writer.close()
        finally:
            self.file.close()

    @property
    def sha256(self) -> str:
        return self.file.sha256


class Hdf5Writer:
    def __init__(self, path: Path, schema: Schema):
        self.path, self.kinds, self.sha256 = path, schema, None
        self.blocks = Blocks(schema, self.write_block)
        self.write = self.blocks.add
        for column in schema:
            if "/" in column:
                raise GenlabError(f"column {column!r}: HDF5 names cannot hold '/'; choose another --format")
        self.file = h5py.File(path, "w")
        self.file.attrs["columns"] = json.dumps(list(schema))
        text = h5py.string_dtype("utf-8")
        dtypes = {"int": "i8", "float": "f8", "bool": "?", "date": "i4", "datetime": "i8", "category": text, "string": text}
        for column, kind in schema.items():
            self._create(f"columns/{column}", dtypes[kind])
            if kind in HDF5_TIME_UNITS:  # HDF5 has no time type: a count since the epoch, its unit said beside it
                self.file[f"columns/{column}"].attrs.update(kind=kind, unit=HDF5_TIME_UNITS[kind], epoch="1970-01-01")
            if kind != "float":
                self._create(f"missing/{column}", "?")

    def _create(self, name: str, dtype) -> None:
        self.file.create_dataset(name, shape=(0,), maxshape=(None,), chunks=(HDF5_CHUNK,), dtype=dtype)

    def _append(self, name: str, values: np.ndarray | list) -> None:
        dataset = self.file[name]
        start = dataset.shape[0]
        dataset.resize((start + len(values),))
        dataset[start:] = values

    def write_block(self, rows: pa.Table) -> None:
        for column, kind in self.kinds.items():
            values = rows.column(column)
            if kind == "float":  # gaps are NaN
                self._append(f"columns/{column}", values.to_numpy(zero_copy_only=False).astype("f8"))
                continue
            missing = values.is_null().to_numpy(zero_copy_only=False)
            if kind in ("string", "category"):
                stored = np.asarray(["" if v is None else v for v in values.to_pylist()], dtype=object)
            else:  # a date as int32 days, a date-time as int64 microseconds since 1970-01-01
                number = {"date": pa.int32(), "datetime": pa.int64()}.get(kind)
                stored = (values.cast(number) if number else values).fill_null(False if kind == "bool" else 0)
                stored = stored.to_numpy(zero_copy_only=False)
            self._append(f"columns/{column}", stored)
            self._append(f"missing/{column}", missing)

    def close(self) -> None:
        self.blocks.finish()
        self.file.close()
        with open(self.path, "rb") as f:  # h5py writes where it likes: the file is hashed once closed
            self.sha256 = hashlib.file_digest(f, "sha256").hexdigest()


def corpus_records(texts: pl.Series) -> pl.Series:
    """Records as they go into a .txt corpus: LF line ends, no blank lines, no trailing whitespace (Python's
    idea of it), nothing for a missing or empty text."""
    spaces = "".join(c for c in whitespace_chars() if c not in "\r\n")
    records = texts.str.strip_chars_end(whitespace_chars())  # a text of one line: all it needs
    lined = np.flatnonzero(texts.str.contains("[\r\n]").fill_null(False).to_numpy())
    if lined.size:
        trailing = rust_class([ord(c) for c in spaces]) + "+(\n|$)"
        fixed = texts.gather(lined).rename("t").to_frame().select(
            pl.col("t").str.replace_all("\r\n?", "\n").str.replace_all(trailing, "${1}")
            .str.replace_all("\n{2,}", "\n").str.strip_chars("\n")).to_series()
        records = records.scatter(lined, fixed)
    return records.filter(records.fill_null("") != "")


class TextCorpusWriter:
    """`train.txt` and friends for `genlab train text --data`: the text column only, records
    separated by one blank line (a record itself never holds one); missing or empty texts are left out."""

    def __init__(self, path: Path):
        self.file = HashedFile(path)
        self.written = False

    def write(self, texts: pd.Series | pl.Series) -> None:
        records = corpus_records(texts if isinstance(texts, pl.Series) else pl.Series(column_values(texts), dtype=pl.String))
        if len(records):
            # A blank line and each record, straight from Arrow's buffer of their UTF-8 (no Python strings);
            # the file's first record goes without its blank line.
            led = ("\n\n" + records).to_arrow()
            led = led.combine_chunks() if isinstance(led, pa.ChunkedArray) else led
            width = np.int64 if pa.types.is_large_string(led.type) else np.int32
            offsets = np.frombuffer(led.buffers()[1], width)[led.offset : led.offset + len(led) + 1]
            self.file.write(memoryview(led.buffers()[2])[offsets[0] + (2 if not self.written else 0) : offsets[-1]])
            self.written = True

    def close(self) -> None:
        if self.written:
            self.file.write(b"\n")
        self.file.close()

    @property
    def sha256(self) -> str:
        return self.file.sha256


class WriterThread:
    """A writer fed on a thread of its own, so that the files of a pass are written side by side with each
    other and with the work on the next chunks (Arrow, Parquet and Polars let go of the interpreter lock).
    `write` queues a chunk (waiting while `depth` are queued); `close` waits for the queue to empty, closes the
    writer and raises what it raised."""

    def __init__(self, writer, depth: int = 2):
        self.writer, self.error = writer, None
        self.queue: queue.Queue = queue.Queue(depth)
        self.thread = threading.Thread(target=self._run, name=f"write {type(writer).__name__}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (chunk := self.queue.get()) is not None:
            if self.error is None:  # after an error the queue is still emptied, so `write` never waits forever
                try:
                    self.writer.write(chunk)
                except BaseException as e:  # raised to the caller by its next `write` or `close`
                    self.error = e

    def write(self, chunk) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(chunk)

    @property
    def sha256(self) -> str:
        return self.writer.sha256

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        try:
            if self.error is not None:
                raise self.error
        finally:
            self.writer.close()

    def __enter__(self) -> "WriterThread":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class Format:
    name: str
    extension: str  # written files get this one
    read: Callable[[Path, int], Chunks]
    writer: type | None  # None: an input only (folders)
    typed: bool  # chunks hold Python values rather than CSV text
    fixed_columns: bool  # the first chunk names every column (not so for JSONL: keys may appear late)
    progress_unit: str
    identity_columns: tuple[str, ...] = ()  # unique per record by construction: left out of duplicate keys


FORMATS = {
    "csv": Format("csv", ".csv", read_csv, CsvWriter, typed=False, fixed_columns=True, progress_unit="B"),
    "json": Format("json", ".json", read_json, JsonWriter, typed=True, fixed_columns=True, progress_unit="rows"),
    "jsonl": Format("jsonl", ".jsonl", read_jsonl, JsonlWriter, typed=True, fixed_columns=False, progress_unit="B"),
    "parquet": Format("parquet", ".parquet", read_parquet, ParquetWriter, typed=True, fixed_columns=True, progress_unit="rows"),
    "hdf5": Format("hdf5", ".h5", read_hdf5, Hdf5Writer, typed=True, fixed_columns=True, progress_unit="rows"),
}
# How each kind is stored in each output format (the data report shows it beside the kind).
TEXT_WRITTEN = {"int": "integer text", "float": "decimal text", "bool": "true/false", "date": "ISO 8601 date text",
                "datetime": "ISO 8601 date-time text", "category": "text", "string": "text"}
JSON_WRITTEN = {**TEXT_WRITTEN, "int": "number", "float": "number", "bool": "boolean", "category": "string", "string": "string"}
WRITTEN = {
    "csv": TEXT_WRITTEN, "json": JSON_WRITTEN, "jsonl": JSON_WRITTEN,
    "parquet": {"int": "int64", "float": "double", "bool": "bool", "date": "date32", "datetime": "timestamp[us]",
                "category": "dictionary<int32, string>", "string": "string"},
    "hdf5": {"int": "int64", "float": "float64", "bool": "bool", "date": "int32 days since 1970-01-01",
             "datetime": "int64 microseconds since 1970-01-01", "category": "UTF-8 string", "string": "UTF-8 string"},
}
EXTENSIONS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet",
              ".pq": "parquet", ".h5": "hdf5", ".hdf5": "hdf5"}


def format_of(path: Path) -> str:
    """The table format a file's extension names."""
    name = EXTENSIONS.get(path.suffix.lower())
    if name is None:
        raise GenlabError(f"{path}: unknown format {path.suffix!r}; pass --input-format ({', '.join(FORMATS)})")
    return name
