"""The Polars engine of `genlab data prepare`: the pandas engine's passes, each chunk's work done a column at a
time in Rust, the file read on all cores.

It reads CSV. The passes, the in-memory steps (dedupe, split) and the writers are the pipeline's own; this
module gives them chunks and answers what each pass asks of a chunk: the columns' kinds, the cleaned text,
what is missing, the records' hashes, the label texts, and the chunk as typed pandas columns for the fit
and write passes. Every answer is the pandas engine's, value for value:

- missing markers are pandas' defaults, and a row with no value at all is skipped, as a blank line is;
- the kind patterns are the pandas engine's, with Python's whitespace spelt out as a class;
- text is cleaned by `TextCleaner.clean_polars` (Python's punctuation and whitespace tables);
- records hash through the same XXH3-128 and column mixing (`genlab.prep.dedupe`);
- a value Polars would convert differently from Python (a digit outside ASCII, say) sends its column
  through the pandas engine's conversion.

A file Polars cannot read as pandas would (ragged rows, bad UTF-8, a repeated column name) raises
`Unsupported` during the scan; the pipeline then runs the pandas engine, which reads it or names the fault.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from genlab.core.progress import progress_bar
from genlab.prep.clean import whitespace_chars, whitespace_class
from genlab.prep.dedupe import add_column_hashes, polars_string_hashes
from genlab.prep.schema import (BOOL_PATTERN, CATEGORY_MAX, DATETIME_PATTERN, FLOAT_PATTERN, INT_PATTERN,
                                PANDAS_DTYPES, TIME_KINDS, TEXT_KINDS, KindTracker, Schema, _time_kind, convert)

# pandas' default missing markers (pandas.read_csv's na_values), so that both engines read the same gaps.
NA_VALUES = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
             "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]
FORMATS = ("csv",)  # what this engine reads; other inputs run on the pandas engine


class Unsupported(Exception):
    """Polars cannot read this input as the pandas engine would: run the pandas engine instead."""


def _full_match(pattern: str) -> str:
    """A Python `re.fullmatch` pattern as a Rust regex matching the same strings (\\s spelt as Python's)."""
    return "^(?:" + pattern.replace(r"\s", whitespace_class()) + ")$"


def _strip(values: pl.Series) -> pl.Series:
    return values.str.strip_chars(whitespace_chars())


def missing(values: pl.Series) -> pl.Series:
    """True where a value is missing: null, or text that is empty or only whitespace (as `missing_mask`)."""
    return (values.is_null() | (_strip(values) == "")).fill_null(True)


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


def to_pandas(values: pl.Series, kind: str) -> pd.Series:
    """A raw CSV column as `kind`, the same values and dtype as `schema.convert` gives."""
    if kind in TEXT_KINDS:
        return _object_series(values)
    gaps = missing(values)
    stripped = _strip(values)
    if kind == "bool":
        truth = (stripped.str.to_lowercase() == "true").fill_null(False)
        return pd.Series(pd.arrays.BooleanArray(truth.to_numpy(), gaps.to_numpy()), name=values.name)
    if kind in ("int", "float"):
        parsed = stripped.cast(pl.Int64 if kind == "int" else pl.Float64, strict=False)
        if not (parsed.is_null() & ~gaps).any():
            if kind == "float":
                return pd.Series(parsed.fill_null(np.nan).to_numpy(), dtype="float64", name=values.name)
            return pd.Series(pd.arrays.IntegerArray(parsed.fill_null(0).to_numpy(), gaps.to_numpy()), name=values.name)
    # Times, and numbers Polars spells differently from Python: the pandas engine's conversion.
    return convert(_object_series(values), kind, typed=False)


class PolarsEngine:
    """Chunks of a CSV file as Polars frames, and what the pipeline's passes need of them."""

    name = "polars"

    def __init__(self, path: Path, chunk_rows: int, progress: bool):
        self.path, self.chunk_rows, self.progress = path, chunk_rows, progress

    def chunks(self, desc: str) -> Iterator[tuple[int, pl.DataFrame]]:
        """(index of the chunk's first row, chunk) for the whole file; every value a string or null."""
        frame = pl.scan_csv(self.path, infer_schema=False, null_values=NA_VALUES, encoding="utf8")
        try:
            header = list(pd.read_csv(self.path, nrows=0, dtype=object, encoding="utf-8").columns)
            same_names = frame.collect_schema().names() == header
        except (ValueError, pd.errors.ParserError, pl.exceptions.PolarsError):  # pandas names the fault
            same_names = False
        if not same_names:  # repeated or odd names: pandas renames them its own way
            raise Unsupported("the header row")
        with progress_bar(total=None, unit="rows", unit_scale=True, desc=desc, enabled=self.progress) as bar:
            start = 0
            try:
                batches = iter(frame.collect_batches(chunk_size=self.chunk_rows))
                for chunk in batches:
                    chunk = chunk.filter(~pl.all_horizontal(pl.all().is_null()))
                    if len(chunk):
                        yield start, chunk
                        bar.update(len(chunk))
                        start += len(chunk)
            except pl.exceptions.PolarsError as e:
                raise Unsupported(" ".join(str(e).split())) from None

    @staticmethod
    def columns(chunk: pl.DataFrame) -> list[str]:
        return chunk.columns

    @staticmethod
    def observe(kinds: KindTracker, chunk: pl.DataFrame) -> None:
        for column in chunk.columns:
            values, forced = chunk[column], kinds.forced.get(column)
            if forced in TIME_KINDS:  # named by --parse-dates: every value must parse, now
                convert(_object_series(values), forced, typed=False)
            if forced is not None:
                kinds.kinds[column] = forced
                continue
            present = values.filter(~missing(values))
            kinds.update(column, lambda: text_kind(present) if len(present) else None, len(present),
                         lambda: present.unique().head(CATEGORY_MAX + 1).to_list())

    @staticmethod
    def cleaned(chunk: pl.DataFrame, recipe) -> pl.DataFrame:
        column = recipe.text_col
        if column is None or column not in chunk.columns or not recipe.cleaner:
            return chunk
        return chunk.with_columns(recipe.cleaner.clean_polars(chunk[column]))

    @staticmethod
    def missing(chunk: pl.DataFrame, column: str) -> np.ndarray:
        return missing(chunk[column]).to_numpy() if column in chunk.columns else np.ones(len(chunk), bool)

    @staticmethod
    def take(chunk: pl.DataFrame, rows: np.ndarray) -> pl.DataFrame:
        return chunk.filter(pl.Series(rows))

    @staticmethod
    def hashes(chunk: pl.DataFrame, columns: list[str]) -> np.ndarray:
        total = np.zeros((len(chunk), 2), np.uint64)
        for column in columns:
            if column in chunk.columns:
                values = chunk[column]
                add_column_hashes(total, column, polars_string_hashes(values.fill_null("")),
                                  values.is_not_null().to_numpy())
        return total

    @staticmethod
    def texts(chunk: pl.DataFrame, column: str) -> list[str | None]:
        return chunk[column].to_list() if column in chunk.columns else [None] * len(chunk)

    @staticmethod
    def label_texts(chunk: pl.DataFrame, column: str) -> list[str | None]:
        if column not in chunk.columns:
            return [None] * len(chunk)
        values = chunk[column]
        return values.zip_with(~missing(values), pl.Series([None] * len(values), dtype=pl.String)).to_list()

    def coerced(self, chunk: pl.DataFrame, schema: Schema, recipe) -> pd.DataFrame:
        """The chunk cleaned and converted to `schema`, as the pandas frame the writers and statistics take."""
        chunk = self.cleaned(chunk.select([c for c in schema if c in chunk.columns]), recipe)
        columns = {}
        for column, kind in schema.items():
            if column in chunk.columns:
                columns[column] = to_pandas(chunk[column], kind)
            else:
                columns[column] = pd.Series([None] * len(chunk), dtype=PANDAS_DTYPES[kind])
        return pd.DataFrame(columns)
