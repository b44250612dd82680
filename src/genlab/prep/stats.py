"""Train statistics: missing-value fills and numeric normalization, fitted on train only.

Fitted in one streaming pass over the train split's rows (before
augmentation), on the values that are present; means and standard deviations
come from exact sums, so they do not depend on how the rows were chunked or
which engine or worker saw them; saved as `normalization.json`
and applied unchanged to train, val, test and to any later data prepared with
`--apply-stats normalization.json`:

    {
      "fill": {"age": {"strategy": "median", "value": 41.0},
               "city": {"strategy": "const", "value": "unknown"}},
      "normalize": {"method": "standard",
                    "columns": {"income": {"mean": 52000.5, "std": 1200.25}}},
      "fitted_on": {"split": "train", "rows": 700}
    }

Standard: (x - mean) / std with the population std; min-max: (x - min) / (max - min).
A constant column (std or range 0) is shifted only. Mean and median make an
int column float; mode keeps its kind. Memory: constant, except median (8
bytes per train value of that column) and mode (one count per distinct value).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from genlab.core.errors import GenlabError
from genlab.core.files import read_text_file
from genlab.prep.schema import (PANDAS_DTYPES, POLARS_DTYPES, TIME_KINDS, Schema, missing_mask, missing_polars,
                                pandas_frame, parse_value, value_text)

FILL_STRATEGIES = ("mean", "median", "mode", "const")
NORM_METHODS = ("standard", "minmax")


@dataclass(frozen=True)
class Fill:
    """How to fill one column's missing values: `strategy`, and `constant` (text) for const."""

    column: str
    strategy: str
    constant: str | None = None

    @classmethod
    def parse(cls, spec: str) -> "Fill":
        """"age=median", "city=const:unknown" -> Fill."""
        column, sep, strategy = spec.partition("=")
        constant = None
        if strategy.startswith("const:"):
            strategy, constant = "const", strategy.removeprefix("const:")
        if not sep or not column or strategy not in FILL_STRATEGIES:
            raise GenlabError(f"--fill {spec}: expected COLUMN=mean|median|mode|const:VALUE")
        return cls(column, strategy, constant)


class ExactSum:
    """The exact sum of float64 values, as an integer count of 2**-SCALE: the same whatever order or groups
    the values come in (chunks, engines, partitions), so the statistics built on it are too."""

    SCALE = 1126  # the smallest subnormal float is 2**-1074 = a 53-bit mantissa times 2**-1126

    def __init__(self):
        self.total = 0
        self.inexact = 0.0  # inf and NaN, which have no exact value: summed as floats

    def add(self, values: np.ndarray) -> None:
        finite = np.isfinite(values)
        if not finite.all():
            self.inexact += float(values[~finite].sum())
            values = values[finite]
        if not len(values):
            return
        mantissa, exponent = np.frexp(values)
        units = (mantissa * 2.0**53).astype(np.int64)  # exact: value = units * 2**(exponent - 53)
        lowest = int(exponent.min())
        # Per exponent, the sums of the units' high and low halves (at most 2**27 each): exact in float64
        # for up to 2**25 values at a time.
        for part in range(0, len(values), 1 << 25):
            bins = exponent[part : part + (1 << 25)] - lowest
            piece = units[part : part + (1 << 25)]
            high = np.bincount(bins, weights=(piece >> 26).astype(np.float64))
            low = np.bincount(bins, weights=(piece & ((1 << 26) - 1)).astype(np.float64))
            for at in np.flatnonzero((high != 0) | (low != 0)).tolist():
                self.total += ((int(high[at]) << 26) + int(low[at])) << (lowest + at - 53 + self.SCALE)

    def __add__(self, other: "ExactSum") -> "ExactSum":
        out = ExactSum()
        out.total, out.inexact = self.total + other.total, self.inexact + other.inexact
        return out

    def over(self, n: int) -> float:
        """The sum divided by n, correctly rounded."""
        try:
            return self.total / (n << self.SCALE) + self.inexact / n
        except OverflowError:
            return float("inf") if self.total > 0 else float("-inf")


class RunningMoments:
    """Count, exact sums of values and squares, min and max: merged in any order, the same mean and std."""

    def __init__(self):
        self.count, self.sum, self.squares = 0, ExactSum(), ExactSum()
        self.min, self.max = np.inf, -np.inf

    def update(self, values: np.ndarray) -> None:
        if not len(values):
            return
        self.count += len(values)
        self.sum.add(values)
        with np.errstate(over="ignore"):
            self.squares.add(values * values)
        self.min, self.max = min(self.min, float(values.min())), max(self.max, float(values.max()))

    def merge(self, other: "RunningMoments") -> None:
        self.count += other.count
        self.sum, self.squares = self.sum + other.sum, self.squares + other.squares
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)

    @property
    def mean(self) -> float:
        return self.sum.over(self.count)

    @property
    def std(self) -> float:
        if self.sum.inexact or self.squares.inexact:
            return float("nan")
        # n * sum(x^2) - sum(x)^2, exactly (units of 2**-2*SCALE), over n^2: no cancellation to lose digits.
        numerator = self.count * self.squares.total * (1 << ExactSum.SCALE) - self.sum.total ** 2
        try:
            return (max(numerator, 0) / ((self.count * self.count) << (2 * ExactSum.SCALE))) ** 0.5
        except OverflowError:  # a variance past the largest float
            return float("inf")


class TrainStats:
    """Accumulates, chunk by chunk of train rows, what the fills and the normalization need."""

    def __init__(self, schema: Schema, fills: list[Fill], normalize: list[str], method: str):
        self.schema, self.fills, self.normalize, self.method = schema, fills, normalize, method
        numeric = {f.column for f in fills if f.strategy in ("mean", "median")} | set(normalize)
        self.moments = {c: RunningMoments() for c in numeric}
        self.values = {f.column: [] for f in fills if f.strategy == "median"}
        self.counts = {f.column: {} for f in fills if f.strategy == "mode"}
        self.rows = 0

    def update(self, train: pd.DataFrame | pl.DataFrame) -> None:
        if isinstance(train, pl.DataFrame):
            train = pandas_frame(train, self.schema)
        self.rows += len(train)
        for column, moments in self.moments.items():
            present = train[column][~missing_mask(train[column])]
            moments.update(present.to_numpy(dtype="f8"))
            if column in self.values:
                self.values[column].append(present.to_numpy(dtype="f8"))
        for column, counts in self.counts.items():
            present = train[column][~missing_mask(train[column])]
            for value, n in present.value_counts(sort=False).items():
                counts[value] = counts.get(value, 0) + int(n)

    def merge(self, other: "TrainStats") -> None:
        """Take in the statistics of the train split's next part."""
        self.rows += other.rows
        for column, moments in self.moments.items():
            moments.merge(other.moments[column])
        for column, values in self.values.items():
            values += other.values[column]
        for column, counts in self.counts.items():
            for value, n in other.counts[column].items():
                counts[value] = counts.get(value, 0) + n

    def _fill_value(self, fill: Fill):
        kind = self.schema[fill.column]
        if fill.strategy == "const":
            value = parse_value(fill.constant, kind, f"--fill {fill.column}=const:{fill.constant}")
            return value_text(value) if kind in TIME_KINDS else value  # JSON holds a date as ISO text
        empty = GenlabError(f"--fill {fill.column}={fill.strategy}: the column has no values in the train split")
        if fill.strategy == "mean":
            if not self.moments[fill.column].count:
                raise empty
            return self.moments[fill.column].mean
        if fill.strategy == "median":
            values = np.concatenate(self.values[fill.column]) if self.values[fill.column] else np.zeros(0)
            if not len(values):
                raise empty
            return float(np.median(values))
        counts = self.counts[fill.column]
        if not counts:
            raise empty
        # Most frequent; ties go to the smallest value, so the result does not depend on row order.
        value = min(counts, key=lambda v: (-counts[v], v))
        return value.item() if isinstance(value, np.generic) else value_text(value) if kind in TIME_KINDS else value

    def result(self) -> dict:
        """The statistics as saved in normalization.json (see the module docstring)."""
        columns = {}
        for column in self.normalize:
            moments = self.moments[column]
            if not moments.count:
                raise GenlabError(f"--normalize {column}: the column has no values in the train split")
            if self.method == "standard":
                columns[column] = {"mean": moments.mean, "std": moments.std}
            else:
                columns[column] = {"min": moments.min, "max": moments.max}
        return {
            "fill": {f.column: {"strategy": f.strategy, "value": self._fill_value(f)} for f in self.fills},
            "normalize": {"method": self.method, "columns": columns},
            "fitted_on": {"split": "train", "rows": self.rows},
        }


def load_stats(path: Path) -> dict:
    """Statistics saved by an earlier `prepare` (its normalization.json)."""
    try:
        stats = json.loads(read_text_file(path))
    except ValueError as e:
        raise GenlabError(f"{path}: not a readable normalization.json ({e})") from None
    if not isinstance(stats, dict) or not {"fill", "normalize"} <= set(stats):
        raise GenlabError(f"{path}: not a normalization.json (needs 'fill' and 'normalize')")
    return stats


def output_kinds(schema: Schema, stats: dict) -> Schema:
    """The schema after fills and normalization: mean/median fills and normalized columns are float."""
    out = dict(schema)
    for column, fill in stats["fill"].items():
        if fill["strategy"] in ("mean", "median"):
            out[column] = "float"
    for column in stats["normalize"]["columns"]:
        out[column] = "float"
    return out


def apply_stats(chunk: pd.DataFrame | pl.DataFrame, stats: dict, kinds: Schema) -> pd.DataFrame | pl.DataFrame:
    """Fill, then normalize, a coerced chunk with saved statistics; `kinds` is `output_kinds`."""
    if isinstance(chunk, pl.DataFrame):
        return _apply_stats_polars(chunk, stats, kinds)
    chunk = chunk.astype({c: PANDAS_DTYPES[k] for c, k in kinds.items() if c in chunk.columns})
    for column, fill in stats["fill"].items():
        missing = missing_mask(chunk[column])
        if missing.any():
            value = fill["value"]
            if kinds.get(column) in TIME_KINDS:  # saved as ISO text
                value = parse_value(str(value), kinds[column], f"--fill {column}")
            chunk.loc[missing, column] = value
    normalize = stats["normalize"]
    for column, params in normalize["columns"].items():
        values = chunk[column]
        if normalize["method"] == "standard":
            shift, scale = params["mean"], params["std"]
        else:
            shift, scale = params["min"], params["max"] - params["min"]
        chunk[column] = (values - shift) / (scale if scale > 0 else 1.0)
    return chunk


def _apply_stats_polars(chunk: pl.DataFrame, stats: dict, kinds: Schema) -> pl.DataFrame:
    """`apply_stats` on a Polars frame of coerced columns: the same values."""
    names = set(chunk.columns)
    chunk = chunk.with_columns([pl.col(c).cast(POLARS_DTYPES[k]) for c, k in kinds.items() if c in names])
    for column, fill in stats["fill"].items():
        value = fill["value"]
        if kinds.get(column) in TIME_KINDS:  # saved as ISO text
            value = parse_value(str(value), kinds[column], f"--fill {column}")
        gaps = missing_polars(chunk[column])
        chunk = chunk.with_columns(pl.when(gaps).then(pl.lit(value, POLARS_DTYPES[kinds[column]]))
                                   .otherwise(pl.col(column)).alias(column))
    normalize = stats["normalize"]
    for column, params in normalize["columns"].items():
        if normalize["method"] == "standard":
            shift, scale = params["mean"], params["std"]
        else:
            shift, scale = params["min"], params["max"] - params["min"]
        # In numpy, as pandas does it: Polars may divide by multiplying with the reciprocal (a last bit apart).
        values = chunk[column].to_numpy()  # a gap is NaN here, and null again below
        chunk = chunk.with_columns(pl.Series(column, (values - shift) / (scale if scale > 0 else 1.0), nan_to_null=True))
    return chunk
