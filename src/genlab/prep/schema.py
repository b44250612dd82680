"""Column kinds: the one type each column holds across a whole input, and conversion to it.

A chunk read from a CSV holds text; a chunk read from JSON, JSONL, Parquet,
HDF5 or a folder holds Python values ("typed" chunks). Left to itself pandas
guesses a dtype per chunk, so one column could be int in the first chunk and
float or text in the next, and the output files would disagree. Instead the
first pass looks at every value (`KindTracker`), and later passes convert each
chunk to the kinds found (`coerce`).

Kinds and their pandas dtypes in a coerced chunk:
    int       Int64 (nullable)         CSV text like 12, -3 (no leading zeros, at most 18 digits)
    float     float64 (NaN missing)    CSV text like 1.5, 2e-3, inf; or a mix of ints and floats
    bool      boolean (nullable)       CSV text true/false in any case
    date      object (date or None)    ISO 8601 dates, 2024-03-01 (text, or a file's own date values)
    datetime  datetime64[us] (NaT)     ISO 8601 date and time, 2024-03-01T12:30[:00[.5]]; a date mixed with
                                       them is its midnight; a column `--parse-dates` names is parsed
                                       whatever its spelling, an offset (Z, +02:00) converted to UTC
    category  object (str or None)     text with few distinct values, each repeated (at most CATEGORY_MAX
                                       across the input, every one seen 4 times on average): labels, codes
    string    object (str or None)     anything else; typed non-strings are written as text

Parquet writes date and datetime as its date32 and timestamp[us] types, HDF5 as days or microseconds since
1970-01-01 with the kind in the dataset's attributes (formats.py); CSV and JSON as ISO 8601 text. Parquet
writes a category as a dictionary (each distinct text stored once, rows as codes; pandas reads it back as a
categorical); the other formats as text.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa

from genlab.core.errors import GenlabError
from genlab.prep.clean import whitespace_chars

INT_PATTERN = r"\s*[+-]?(?:0|[1-9]\d{0,17})\s*"
FLOAT_PATTERN = r"(?i)\s*[+-]?(?:(?:\d+\.\d*|\.\d+)(?:e[+-]?\d+)?|\d+e[+-]?\d+|inf|infinity)\s*"
BOOL_PATTERN = r"(?i)\s*(?:true|false)\s*"
DATE_PATTERN = r"\s*\d{4}-\d{2}-\d{2}\s*"
DATETIME_PATTERN = r"\s*\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?\s*"  # no offset: naive times
TIME_KINDS = ("date", "datetime")
TEXT_KINDS = ("string", "category")
CATEGORY_MAX = 64  # distinct values a text column may hold and still be a category

PANDAS_DTYPES = {"int": "Int64", "float": "float64", "bool": "boolean", "date": object, "datetime": "datetime64[us]",
                 "category": object, "string": object}
POLARS_DTYPES = {"int": pl.Int64, "float": pl.Float64, "bool": pl.Boolean, "date": pl.Date,
                 "datetime": pl.Datetime("us"), "category": pl.String, "string": pl.String}
ARROW_TYPES = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "date": pa.date32(),
               "datetime": pa.timestamp("us"), "category": pa.dictionary(pa.int32(), pa.string()), "string": pa.string()}

Schema = dict[str, str]  # column -> kind, in column order

MAX_COLUMNS = 10_000  # each column costs every chunk a few calls of its own: 10,000 take 20 s even for three rows
MAX_VALUE_CHARS = 16 * 1024 * 1024  # cleaning and augmenting a value costs about 20 times its size in memory


def check_longest(path, longest: tuple[str, int] | None) -> None:
    """One line when a value is longer than MAX_VALUE_CHARS (a 162 MB CSV of one cell took 3.8 GB; a few GB
    of one cell would take the machine's memory). `longest`: (column, characters) of the chunk's longest text."""
    if longest is not None and longest[1] > MAX_VALUE_CHARS:
        raise GenlabError(f"{path}: column {longest[0]!r} holds a value of {longest[1]:,} characters; data prepare "
                          f"takes values of at most {MAX_VALUE_CHARS:,}")


def check_width(path, columns: list[str]) -> None:
    """One line when a table is wider than MAX_COLUMNS (a 1.4 MB file of 200,000 columns ran for hours)."""
    if len(columns) > MAX_COLUMNS:
        raise GenlabError(f"{path}: {len(columns):,} columns; data prepare takes at most {MAX_COLUMNS:,}")


def missing_mask(values: pd.Series) -> np.ndarray:
    """True where a value is missing: NA/NaN/None, or a string that is empty or only whitespace."""
    missing = values.isna().to_numpy(dtype=bool)
    if values.dtype == object:  # typed values: only some may be strings
        return missing | np.fromiter((type(v) is str and not v.strip() for v in values), bool, len(values))
    if pd.api.types.is_string_dtype(values.dtype):
        return missing | values.str.strip().eq("").fillna(False).to_numpy(dtype=bool)
    return missing


def missing_polars(values: pl.Series) -> pl.Series:
    """`missing_mask` of a Polars column: null, NaN, or text that is empty or only whitespace."""
    if values.dtype == pl.String:
        return (values.is_null() | (values.str.strip_chars(whitespace_chars()) == "")).fill_null(True)
    if values.dtype in (pl.Float32, pl.Float64):
        return (values.is_null() | values.is_nan()).fill_null(True)
    return values.is_null()


def value_text(value) -> str:
    """A typed value as text: JSON spelling for bools, lists and dicts; repr for floats."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dt.date, pd.Timestamp)):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return str(value)


def _text_kind(present: pd.Series) -> str:
    ints = present.str.fullmatch(INT_PATTERN)
    if ints.all():
        return "int"
    if (ints | present.str.fullmatch(FLOAT_PATTERN)).all():
        return "float"
    if present.str.fullmatch(BOOL_PATTERN).all():
        return "bool"
    return _time_kind(present)


def _time_kind(present: pd.Series) -> str:
    """Text that is all ISO 8601 dates, or dates and times, and parses as such (2023-02-30 does not): date or
    datetime; else string."""
    if not present.str.fullmatch(DATETIME_PATTERN).all():
        return "string"
    parsed = pd.to_datetime(present.str.strip(), format="ISO8601", errors="coerce")
    if parsed.isna().any():
        return "string"
    return "date" if present.str.fullmatch(DATE_PATTERN).all() else "datetime"


def _typed_kind(present: pd.Series) -> str:
    types = set(map(type, present))
    if types == {bool}:
        return "bool"
    if types == {str}:  # JSON has no dates: ISO text is how they travel
        return _time_kind(present)
    if types <= {dt.date, dt.datetime, pd.Timestamp}:
        return "date" if types == {dt.date} else "datetime"
    if types <= {int, float}:
        if float in types:
            return "float"
        return "int" if all(-(2**63) <= v < 2**63 for v in present) else "string"
    return "string"


def chunk_kind(present: pd.Series, typed: bool) -> str | None:
    """The kind of one chunk's column from its present values (missing ones left out), or None when there are none."""
    if present.empty:
        return None
    kind = _typed_kind if typed else _text_kind
    # Most text columns show it in their first values: then the full scan is not needed.
    return "string" if kind(present.iloc[:100]) == "string" else kind(present)


def merge_kinds(a: str | None, b: str | None) -> str | None:
    """The narrowest kind that holds values of both kinds (int and float make float)."""
    if a is None or a == b:
        return b
    if b is None:
        return a
    if {a, b} == {"int", "float"}:
        return "float"
    if {a, b} == {"date", "datetime"}:
        return "datetime"
    return "string"


class KindTracker:
    """Follows every column's kind across chunks; columns keep their order of first appearance."""

    def __init__(self, typed: bool, forced: Schema, settled: tuple[frozenset, frozenset] | None = None):
        """`settled`: what earlier parts of the input settled (`settled()`), so that a tracker of one chunk
        does not scan again what cannot change."""
        self.typed = typed
        self.forced = forced  # kinds fixed in advance (a text column is text whatever it holds)
        self.kinds: dict[str, str | None] = {}
        self.distinct: dict[str, set | None] = {}  # a text column's values while few (None: too many)
        self.present: dict[str, int] = {}
        strings, many = settled or ((), ())
        self.kinds.update(dict.fromkeys(strings, "string"))
        self.distinct.update(dict.fromkeys(many))

    def settled(self) -> tuple[frozenset, frozenset]:
        """(the string columns, whatever comes later; the columns with too many values to be categories)."""
        return (frozenset(c for c, k in self.kinds.items() if k == "string"),
                frozenset(c for c, seen in self.distinct.items() if seen is None))

    def observe(self, chunk: pd.DataFrame) -> None:
        for column in chunk.columns:
            values, forced = chunk[column], self.forced.get(column)
            if forced in TIME_KINDS:  # named by --parse-dates: every value must parse, now
                convert(values, forced, self.typed)
            if forced is not None:  # fixed in advance: nothing to scan
                self.kinds[column] = forced
                continue
            present = values[~missing_mask(values)]
            self.update(column, lambda: chunk_kind(present, self.typed), len(present),
                        lambda: map(value_text, present.tolist()))  # lists and dicts have no unique()

    def update(self, column: str, kind: Callable[[], str | None], present: int, distinct: Callable[[], Iterable[str]]):
        """One chunk of a column: `kind()` its kind (None: no value), `present` its values' count,
        `distinct()` its distinct values as text. Each is asked only while the answer can matter."""
        seen = self.distinct.setdefault(column, set())
        if seen is not None:
            self.present[column] = self.present.get(column, 0) + present
            seen.update(distinct())
            if len(seen) > CATEGORY_MAX:
                self.distinct[column] = None
        known = self.kinds.get(column)
        # A string column stays one whatever comes later: its kind needs no further scan.
        self.kinds[column] = known if known == "string" else merge_kinds(known, kind())

    def merge(self, other: "KindTracker") -> None:
        """Take in what `other` saw of the input's next part: as if it had been observed here."""
        for column, kind in other.kinds.items():
            known = self.kinds.get(column)
            self.kinds[column] = merge_kinds(known, kind) if column in self.kinds else kind
            seen, more = self.distinct.get(column, set()), other.distinct.get(column, set())  # None: too many
            if seen is None or more is None or len(seen | more) > CATEGORY_MAX:
                self.distinct[column] = None
            else:
                self.distinct[column] = seen | more
                self.present[column] = self.present.get(column, 0) + other.present.get(column, 0)

    def schema(self) -> Schema:
        """The kinds found; a column with no value at all is string, text with few repeated values a category."""
        out = {}
        for column, kind in self.kinds.items():
            kind = kind or "string"
            seen = self.distinct.get(column)
            if kind == "string" and seen and self.forced.get(column) != "string" and \
                    self.present.get(column, 0) >= 4 * len(seen):
                kind = "category"
            out[column] = kind
        return out


def convert(values: pd.Series, kind: str, typed: bool) -> pd.Series:
    """One raw column (CSV text, or typed values) as `kind` (see the module docstring)."""
    missing = missing_mask(values)
    raw = values.tolist()
    if kind in TEXT_KINDS:
        # Blank strings stay as they are in text columns; only true NAs become None.
        na = values.isna().to_numpy(dtype=bool)
        text = value_text if typed else str
        out = [None if m else text(v) for v, m in zip(raw, na)]
        return pd.Series(out, index=values.index, dtype=object)
    if kind in TIME_KINDS:
        return _times(values, missing, kind)
    if kind == "bool":
        parse = bool if typed else (lambda v: v.strip().lower() == "true")
    elif kind == "int":
        parse = int
    else:
        parse = float
    out = [None if m else parse(v) for v, m in zip(raw, missing)]
    if kind == "float":
        return pd.Series([np.nan if v is None else v for v in out], index=values.index, dtype="float64")
    return pd.Series(out, index=values.index, dtype=PANDAS_DTYPES[kind])


def _times(values: pd.Series, missing: np.ndarray, kind: str) -> pd.Series:
    """Dates (datetime.date) or naive datetimes (datetime64[us]; an offset converted to UTC) from text or values;
    a value that is neither is one line naming it."""
    present = values[~missing]
    text = present.map(lambda v: v.strip() if isinstance(v, str) else v)
    try:
        parsed = pd.to_datetime(text, format="ISO8601", utc=True)
    except (ValueError, TypeError, OverflowError):
        try:  # a column --parse-dates names may be spelt otherwise (03/01/2024, 1 Mar 2024): pandas' own guess
            parsed = pd.to_datetime(text, format="mixed", utc=True)
        except (ValueError, TypeError, OverflowError) as e:
            bad = next((v for v in text if pd.isna(pd.to_datetime(v, errors="coerce", format="mixed"))), text.iloc[0])
            raise GenlabError(f"column {values.name!r}: {str(bad)[:60]!r} is not a date or time "
                              f"({type(e).__name__})") from None
    parsed = parsed.dt.tz_convert(None).astype("datetime64[us]")
    if kind == "date":
        out = pd.Series([None] * len(values), index=values.index, dtype=object)
        out[~missing] = [t.date() for t in parsed]
        return out
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us]")
    out[~missing] = parsed.to_numpy()
    return out


def coerce(chunk: pd.DataFrame, schema: Schema, typed: bool) -> pd.DataFrame:
    """Convert a raw chunk to `schema`: every column, in order, with its kind's dtype.

    A column the chunk lacks (a JSONL row without that key) comes out all missing.
    """
    columns = {}
    for column, kind in schema.items():
        if column in chunk.columns:
            columns[column] = convert(chunk[column], kind, typed)
        else:
            columns[column] = pd.Series([None] * len(chunk), index=chunk.index, dtype=PANDAS_DTYPES[kind])
    return pd.DataFrame(columns, index=chunk.index)


def polars_column(values: pd.Series, kind: str) -> pl.Series:
    """A coerced pandas column as the Polars column of its kind (missing values null)."""
    if kind == "date":
        return pl.Series(values.name, values.tolist(), dtype=pl.Date)
    return pl.from_pandas(values).cast(POLARS_DTYPES[kind]).rename(str(values.name))


def pandas_frame(frame: pl.DataFrame, kinds: Schema) -> pd.DataFrame:
    """A Polars frame of kinds' columns as the pandas frame `coerce` would have made (its dtypes, NaN for a
    missing float)."""
    columns = {}
    for column in frame.columns:
        values, kind = frame[column], kinds[column]
        if kind == "int":
            columns[column] = pd.arrays.IntegerArray(values.fill_null(0).to_numpy(), values.is_null().to_numpy())
        elif kind == "float":
            columns[column] = values.fill_null(np.nan).to_numpy()
        elif kind == "bool":
            columns[column] = pd.arrays.BooleanArray(values.fill_null(False).to_numpy(), values.is_null().to_numpy())
        elif kind == "datetime":
            columns[column] = values.to_numpy()
        else:
            columns[column] = pd.Series(values.to_list(), dtype=object)
    return pd.DataFrame(columns)


def arrow_schema(schema: Schema) -> pa.Schema:
    return pa.schema([(column, ARROW_TYPES[kind]) for column, kind in schema.items()])


def parse_value(text: str, kind: str, what: str):
    """A user-given constant (`--fill col=const:TEXT`) as a value of `kind`; `what` names it in errors."""
    patterns = {"int": [INT_PATTERN], "float": [INT_PATTERN, FLOAT_PATTERN], "bool": [BOOL_PATTERN]}
    if kind in patterns and not any(re.fullmatch(p, text) for p in patterns[kind]):
        raise GenlabError(f"{what}: {text!r} is not a {kind}")
    return convert(pd.Series([text], dtype=object), kind, typed=False).to_numpy(dtype=object)[0]
