"""The Polars engine of `genlab data prepare`: the pandas engine's passes, each chunk's work done a column at a
time in Rust, the file read on all cores.

It reads CSV (4 MB blocks cut at record boundaries, each parsed by Polars) and JSONL (Arrow's parser). The
passes, the in-memory steps (dedupe, split) and the writers are the pipeline's own; this module gives them
chunks and answers what each pass asks of a chunk: the columns' kinds, the cleaned text, what is missing,
the records' hashes, the label texts, and the chunk as typed Polars columns for the fit and write passes.
Every answer is the pandas engine's, value for value:

- CSV: missing markers are pandas' defaults, and a row with no value at all is skipped, as a blank line is;
- JSONL: a column of one JSON type keeps it (numbers that mix ints and floats are floats, as in pandas);
  a column Arrow would read as another type than Python does (mixed types, a timestamp, a list, a big
  integer, a key first seen late) makes the file `Unsupported`;
- the kind patterns are the pandas engine's, with Python's whitespace spelt out as a class;
- text is cleaned by `TextCleaner.clean_polars` (Python's punctuation and whitespace tables);
- records hash through the same XXH3-128 and column mixing (`genlab.prep.dedupe`);
- a value Polars would convert differently from Python (a digit outside ASCII, say) sends its column
  through the pandas engine's conversion.

A file Polars cannot read as pandas would (ragged rows, bad UTF-8, a repeated column name, those JSON
values) raises `Unsupported` during the scan; the pipeline then runs the pandas engine, which reads it or
names the fault.
"""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.json as pa_json

from genlab.core.progress import progress_bar
from genlab.prep.clean import whitespace_chars, whitespace_class
from genlab.prep.dedupe import add_column_hashes, number_text, polars_string_hashes
from genlab.prep.schema import (BOOL_PATTERN, CATEGORY_MAX, DATETIME_PATTERN, FLOAT_PATTERN, INT_PATTERN,
                                POLARS_DTYPES, TIME_KINDS, TEXT_KINDS, KindTracker, Schema, _time_kind, convert,
                                check_width, polars_column, value_text)
from genlab.prep.schema import missing_polars as missing

# pandas' default missing markers (pandas.read_csv's na_values), so that both engines read the same gaps.
NA_VALUES = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
             "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]
FORMATS = ("csv", "jsonl")  # what this engine reads; other inputs run on the pandas engine
JSON_TYPES = (pl.String, pl.Int64, pl.Float64, pl.Boolean, pl.Null)  # what Arrow reads as Python would
JSON_BLOCK = 1 << 22  # bytes of JSONL Arrow parses at a time
CSV_BLOCK = 1 << 22  # bytes of CSV Polars parses at a time (4 MB: measured fastest and smaller than 16 MB)


class Unsupported(Exception):
    """Polars cannot read this input as the pandas engine would: run the pandas engine instead."""


def _full_match(pattern: str) -> str:
    """A Python `re.fullmatch` pattern as a Rust regex matching the same strings (\\s spelt as Python's)."""
    return "^(?:" + pattern.replace(r"\s", whitespace_class()) + ")$"


def _strip(values: pl.Series) -> pl.Series:
    return values.str.strip_chars(whitespace_chars())


def present(values: pl.Series) -> pl.Series:
    """True where a value is there: not null, and not NaN (pandas counts NaN as missing)."""
    return ~missing(values) if values.dtype != pl.String else values.is_not_null()


def typed_kind(present_values: pl.Series) -> str:
    """`schema._typed_kind` on a column of one JSON type (JSON_TYPES), its present values."""
    kind = {pl.Boolean: "bool", pl.Int64: "int", pl.Float64: "float"}.get(present_values.dtype)
    if kind is not None:
        return kind
    return _time_kind(_object_series(present_values))  # text: ISO dates and times are found as in CSV


def _spelt_as_python(values: pl.Series) -> pl.Series:
    """`values`, where their text will be as Python writes it: not so for a whole number Arrow made a float
    (Python writes 1 where Arrow has 1.0)."""
    if values.dtype == pl.Float64 and ((values == values.round()) & values.is_finite()).any():
        raise Unsupported(f"{values.name}: whole numbers among floats, used as text")
    return values


def _python_texts(values: pl.Series) -> pl.Series:
    """Values as the pandas engine hashes them (`dedupe.typed_text`); null where missing."""
    if values.dtype == pl.String:
        return values
    if values.dtype == pl.Int64:
        return ("\x01num:" + values.cast(pl.String)).rename(values.name)
    if values.dtype == pl.Float64:
        # Polars spells a float as Python's repr does between 1e-4 and 1e16; whole ones hash as ints.
        whole = (values == values.round()) & (values.abs() < 2.0**63) & values.is_finite()
        usual = (values.abs() >= 1e-4) & (values.abs() < 1e16)
        frame = values.to_frame("v").with_columns(whole=whole, usual=usual)
        texts = frame.select(pl.when("whole").then(pl.col("v").cast(pl.Int64, strict=False).cast(pl.String))
                             .when("usual").then(pl.col("v").cast(pl.String)))
        texts = ("\x01num:" + texts.to_series()).rename(values.name)
        rest = np.flatnonzero((~(whole | usual) & values.is_not_null()).fill_null(False).to_numpy())
        if rest.size:
            texts = texts.scatter(rest, [number_text(values[int(i)]) for i in rest])
        return texts
    return pl.Series(values.name, [None if v is None else f"\x01{type(v).__name__}:{value_text(v)}"
                                   for v in values.to_list()], dtype=pl.String)


def text_kind(present: pl.Series) -> str:
    """`schema._text_kind` on a Polars String series of present values."""
    ints = present.str.contains(_full_match(INT_PATTERN))
    if ints.all():
        return "int"
    if (ints | present.str.contains(_full_match(FLOAT_PATTERN))).all():
        return "float"
    if present.str.contains(_full_match(BOOL_PATTERN)).all():
        return "bool"
    if not present.str.contains(_full_match(DATETIME_PATTERN)).all():
        return "string"
    return _time_kind(pd.Series(present.to_list(), dtype=object))  # dates are rare: pandas checks they parse


def _object_series(values: pl.Series) -> pd.Series:
    return pd.Series(values.to_list(), dtype=object, name=values.name)


def to_kind(values: pl.Series, kind: str, typed: bool) -> pl.Series:
    """A raw column as the Polars column of `kind`: the values `schema.convert` gives, missing ones null."""
    name = values.name
    if values.dtype in (pl.Int64, pl.Float64) and kind in ("int", "float"):
        values = values.fill_nan(None) if values.dtype == pl.Float64 else values
        return values.cast(POLARS_DTYPES[kind])
    if values.dtype == pl.Boolean and kind == "bool":
        return values
    if typed and values.dtype != pl.String:  # Python values: as pandas converts them
        return polars_column(convert(_object_series(values), kind, typed=True), kind).rename(name)
    if kind in TEXT_KINDS:
        return values
    gaps = missing(values)
    stripped = _strip(values)
    if kind == "bool":
        truth = stripped.str.to_lowercase() == "true"
        return truth.zip_with(~gaps, pl.Series([None] * len(values), dtype=pl.Boolean)).rename(name)
    if kind in ("int", "float"):
        parsed = stripped.cast(POLARS_DTYPES[kind], strict=False)
        if not (parsed.is_null() & ~gaps).any():
            return parsed.zip_with(~gaps, pl.Series([None] * len(values), dtype=parsed.dtype)).rename(name)
    # Times, and numbers Polars spells differently from Python: the pandas engine's conversion.
    return polars_column(convert(_object_series(values), kind, typed), kind).rename(name)


def json_frames(source: Path | BinaryIO, path: Path | None = None) -> Iterator[pl.DataFrame]:
    """JSONL (a file, or bytes of the file `path`) as frames of the JSON types, Arrow's parse; `Unsupported` where
    it is not Python's."""
    def reader(schema: pa.Schema | None = None):
        if hasattr(source, "seek"):
            source.seek(0)
        options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")
        return pa_json.open_json(source, read_options=pa_json.ReadOptions(block_size=JSON_BLOCK), parse_options=options)

    try:
        batches = reader()
        order = batches.schema.names  # the keys in the order they first appear
        check_width(path or source, order)
        first = set(order)
        times = [f for f in batches.schema if pa.types.is_timestamp(f.type)]
        if times:  # Arrow reads ISO text as times: read those columns as the text they are (it puts them first)
            batches = reader(pa.schema([(f.name, pa.string()) for f in times]))
        for batch in batches:
            frame = pl.from_arrow(batch)
            frame = frame.select(order + [c for c in frame.columns if c not in first])
            for column, dtype in frame.schema.items():
                if dtype not in JSON_TYPES:
                    raise Unsupported(f"{column}: {dtype}")
                # An integer too big for int64 arrives as a double: Python keeps it whole.
                if dtype == pl.Float64 and ((frame[column].abs() >= 2.0**53) & frame[column].is_finite()).any():
                    raise Unsupported(f"{column}: large numbers")
            yield frame
    except (pa.ArrowInvalid, OSError) as e:
        raise Unsupported(" ".join(str(e).split())) from None


def check_header(path: Path) -> None:
    """`Unsupported` when the header is not one pandas reads to the same column names as Polars (repeated or
    odd names, no header at all)."""
    with open(path, encoding="utf-8", errors="replace", newline="") as f, contextlib.suppress(csv.Error, StopIteration):
        check_width(path, next(csv.reader(f)))  # before pandas, which takes half a minute over 200,000 names
    try:
        header = list(pd.read_csv(path, nrows=0, dtype=object, encoding="utf-8").columns)
        same_names = pl.scan_csv(path, infer_schema=False).collect_schema().names() == header
    except (ValueError, pd.errors.ParserError, pl.exceptions.PolarsError):  # pandas names the fault
        same_names = False
    if not same_names:
        raise Unsupported("the header row")


def record_end(path: Path, at: int, inside: bool, quoted: bool = True, search: int = 1 << 20) -> int:
    """The first byte after `at` that starts a record: just past a newline outside quotes (an even number of
    quote characters before it; `inside`: whether `at` is inside quotes; `quoted` False: any newline, as in
    JSONL). The file's size if there is none."""
    with open(path, "rb") as f:
        f.seek(at)
        while block := f.read(search):
            data = np.frombuffer(block, np.uint8)
            quotes = np.cumsum(data == ord('"')) if quoted else np.zeros(len(data), np.int64)
            newlines = np.flatnonzero((data == ord("\n")) & ((quotes + inside) % 2 == 0))
            if newlines.size:
                return at + int(newlines[0]) + 1
            inside = bool((int(quotes[-1]) + inside) % 2)
            at += len(block)
    return at


def csv_blocks(f: BinaryIO, size: int) -> Iterator[bytes]:
    """The rest of a CSV file (read from a record's start) in blocks of whole records, about `size` bytes each:
    a block ends at its last newline with an even number of quote characters before it."""
    held = b""
    while chunk := f.read(size):
        data = held + chunk if held else chunk
        quotes = np.frombuffer(data, np.uint8) == ord('"')
        cut = data.rfind(b"\n")
        while cut >= 0 and np.count_nonzero(quotes[:cut]) % 2:  # inside a quoted field: an earlier newline
            cut = data.rfind(b"\n", 0, cut)
        held = data[cut + 1 :]
        if cut >= 0:
            yield data[: cut + 1]
    if held:
        yield held


def parse_csv(header: bytes, block: bytes) -> pl.DataFrame:
    """A block of whole records under the file's header, every value text (pandas' missing markers null), rows
    without a value dropped; `Unsupported` where Polars cannot read it."""
    try:
        frame = pl.read_csv(io.BytesIO(header + block), infer_schema=False, null_values=NA_VALUES, encoding="utf8")
    except pl.exceptions.PolarsError as e:
        raise Unsupported(" ".join(str(e).split())) from None
    empty = frame.select(pl.all_horizontal(pl.all().is_null())).to_series()
    return frame.filter(~empty) if empty.any() else frame  # a filter copies every column: only when needed


class SpillFile:
    """The scan's cleaned chunks, kept on disk in input order (an Arrow IPC stream per column of each chunk) so
    that the fit and write passes read them back instead of parsing and cleaning the input again: those
    were about a fifth of the pipeline's CPU time. A pass reads only the columns it uses (the fit, a few
    numbers: not the text). Chunks are read back with plain reads, not a memory map, so they count against
    memory only while in use. A disk that fills up ends the spill, not the run: the passes then read the
    input again."""

    def __init__(self, path: Path):
        self.path = path
        self.file: BinaryIO | None = open(path, "wb")
        self.chunk_spans: list[tuple[int, dict[str, tuple[int, int]]]] = []  # (rows, column -> (offset, bytes))

    @staticmethod
    def fits(folder: Path, input_bytes: int) -> bool:
        """Whether `folder`'s disk has room for the spill (measured: 1.3 times a CSV input, 0.9 a JSONL one)
        and a little more. A disk that fills up anyway drops the spill, which frees its room for the outputs."""
        return shutil.disk_usage(folder).free > 2 * input_bytes + (256 << 20)

    @property
    def usable(self) -> bool:
        return self.file is not None

    def write(self, chunk: pl.DataFrame) -> None:
        if self.file is None:
            return
        try:
            spans = {}
            for column in chunk.columns:
                offset = self.file.tell()
                chunk.select(column).write_ipc_stream(self.file)
                spans[column] = (offset, self.file.tell() - offset)
            self.chunk_spans.append((len(chunk), spans))
        except OSError:  # the disk is full: read the input again instead
            self.remove()

    def close(self) -> None:
        """The spill is complete."""
        if self.file is not None:
            self.file.close()

    def chunks(self, columns: list[str] | None = None) -> Iterator[tuple[int, int, pl.DataFrame]]:
        """(first row, rows, chunk) in order, the chunk with `columns` only (those it has; None: all)."""
        with open(self.path, "rb") as f:
            start = 0
            for rows, spans in self.chunk_spans:
                frames = []
                for column in spans if columns is None else [c for c in columns if c in spans]:
                    offset, size = spans[column]
                    f.seek(offset)
                    frames.append(pl.read_ipc_stream(io.BytesIO(f.read(size))))
                yield start, rows, pl.concat(frames, how="horizontal") if frames else pl.DataFrame()
                start += rows

    def remove(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.path.unlink(missing_ok=True)


def _sliced(frames: Iterator[pl.DataFrame], rows: int) -> Iterator[pl.DataFrame]:
    """The frames cut into pieces of at most `rows` rows (small ones are not joined: no copies)."""
    for frame in frames:
        for offset in range(0, len(frame), rows):
            yield frame.slice(offset, rows)


class PolarsEngine:
    """Chunks of a CSV or JSONL file as Polars frames, and what the pipeline's passes need of them."""

    name = "polars"

    def __init__(self, path: Path, fmt: str, chunk_rows: int, progress: bool):
        self.path, self.format, self.chunk_rows, self.progress = path, fmt, chunk_rows, progress
        self.typed = fmt == "jsonl"
        self.spilled: SpillFile | None = None  # once set, chunks come cleaned from it

    def chunks(self, desc: str, columns: list[str] | None = None) -> Iterator[tuple[int, pl.DataFrame]]:
        """(index of the chunk's first row, chunk) for the whole file; after `read_spilled`, the scan's
        cleaned chunks, holding only `columns` (those present) where they are named."""
        with progress_bar(total=None, unit="rows", unit_scale=True, desc=desc, enabled=self.progress) as bar:
            if self.spilled is not None:
                for start, rows, chunk in self.spilled.chunks(columns):
                    yield start, chunk
                    bar.update(rows)
                return
            batches = _sliced(json_frames(self.path), self.chunk_rows) if self.typed else self._csv_batches()
            start = 0
            for chunk in batches:
                yield start, chunk
                bar.update(len(chunk))
                start += len(chunk)

    def read_spilled(self, spill: SpillFile) -> None:
        """From now on, read the chunks `spill` holds (the scan's, cleaned) instead of the input."""
        self.spilled = spill

    def _csv_batches(self) -> Iterator[pl.DataFrame]:
        """Every value a string or null; rows without a value skipped. The file is read CSV_BLOCK bytes at a
        time, each cut after its last whole record and parsed on all cores, so memory stays at a block or two
        whatever the file's size (Polars' own streaming reader reads ahead by more as files grow)."""
        check_header(self.path)
        with open(self.path, "rb") as f:
            header = f.read(record_end(self.path, 0, inside=False))
            for block in csv_blocks(f, CSV_BLOCK):
                frame = parse_csv(header, block)
                for offset in range(0, len(frame), self.chunk_rows):
                    yield frame.slice(offset, self.chunk_rows)

    @staticmethod
    def columns(chunk: pl.DataFrame) -> list[str]:
        return chunk.columns

    @staticmethod
    def longest(chunk: pl.DataFrame) -> tuple[str, int] | None:
        """(column, characters) of the longest text in the chunk; None without text."""
        lengths = chunk.select(pl.col(pl.String).str.len_chars().max())
        sizes = [(column, value or 0) for column, value in lengths.row(0, named=True).items()] if lengths.width else []
        return max(sizes, key=lambda s: s[1], default=None)

    def observe(self, kinds: KindTracker, chunk: pl.DataFrame) -> None:
        kind = typed_kind if self.typed else text_kind
        for column in chunk.columns:
            values, forced = chunk[column], kinds.forced.get(column)
            if forced in TIME_KINDS:  # named by --parse-dates: every value must parse, now
                convert(_object_series(values), forced, self.typed)
            if forced is not None:
                if forced == "string":
                    _spelt_as_python(values)
                kinds.kinds[column] = forced
                continue
            there = values.filter(~missing(values))
            # Most text columns show it in their first values: then the whole column needs no pattern.
            kinds.update(column, lambda: None if not len(there) else "string" if kind(there.head(100)) == "string"
                         else kind(there), len(there),
                         lambda: map(value_text, there.unique().head(CATEGORY_MAX + 1).to_list()))

    @staticmethod
    def cleaned(chunk: pl.DataFrame, recipe) -> pl.DataFrame:
        """The text column as text (a JSON number as Python writes it), cleaned."""
        column = recipe.text_col
        if column is None or column not in chunk.columns:
            return chunk
        text = chunk[column]
        if text.dtype != pl.String:
            text = pl.Series(column, [None if v is None else value_text(v) for v in text.to_list()], dtype=pl.String)
        return chunk.with_columns(recipe.cleaner.clean_polars(text) if recipe.cleaner else text)

    @staticmethod
    def missing(chunk: pl.DataFrame, column: str) -> np.ndarray:
        return missing(chunk[column]).to_numpy() if column in chunk.columns else np.ones(len(chunk), bool)

    @staticmethod
    def take(chunk: pl.DataFrame, rows: np.ndarray) -> pl.DataFrame:
        return chunk.filter(pl.Series(rows))

    def hashes(self, chunk: pl.DataFrame, columns: list[str]) -> np.ndarray:
        total, names = np.zeros((len(chunk), 2), np.uint64), set(chunk.columns)  # a Polars frame lists its names anew each time
        for column in columns:
            if column in names:
                values = chunk[column]
                texts = _python_texts(values) if self.typed else values
                add_column_hashes(total, column, polars_string_hashes(texts.fill_null("")), present(values).to_numpy())
        return total

    @staticmethod
    def texts(chunk: pl.DataFrame, column: str) -> list[str | None]:
        return chunk[column].to_list() if column in chunk.columns else [None] * len(chunk)  # cleaned: text

    @staticmethod
    def label_texts(chunk: pl.DataFrame, column: str) -> pl.Series | list[str | None]:
        """The column's values as text (`value_text`), null where missing."""
        if column not in chunk.columns:
            return [None] * len(chunk)
        values = _spelt_as_python(chunk[column])
        if values.dtype not in (pl.String, pl.Int64, pl.Boolean):  # floats: Python's repr
            return [None if gap else value_text(v) for v, gap in zip(values.to_list(), missing(values).to_list())]
        texts = values.cast(pl.String)  # "true"/"false" and integer digits, as Python writes them
        return texts.zip_with(~missing(values), pl.Series([None] * len(values), dtype=pl.String))

    def coerced(self, chunk: pl.DataFrame, schema: Schema, recipe) -> pl.DataFrame:
        """The chunk cleaned (unless it was spilled, cleaned) and converted to `schema`: a column of each
        kind's Polars type, in order."""
        names = set(chunk.columns)  # once: `in chunk.columns` per column made 10,000 columns take a minute
        chunk = chunk.select([c for c in schema if c in names])
        if self.spilled is None:
            chunk = self.cleaned(chunk, recipe)
        return pl.DataFrame([to_kind(chunk[column], kind, self.typed) if column in names
                             else pl.Series(column, [None] * len(chunk), dtype=POLARS_DTYPES[kind])
                             for column, kind in schema.items()])
