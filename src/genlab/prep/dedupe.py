"""Duplicate removal by 128-bit hashes: one pass to hash, one sort to find first occurrences.

A record's hash is the sum (mod 2**64, per half) of one hash per present
value, each mixed with its column's name: so the same values give the same
hash whichever chunk they come in, a missing value counts as absent (a JSONL
line without a key equals one with that key null), and values do not match
across columns. Each value is hashed with XXH3-128 (polars-hash: the same
numbers on every version and platform). Two records collide with probability
about n**2 / 2**129.

Memory: the 16-byte hash of every record (and as much again for the
normalized-text key) plus 8 bytes per record while sorting, not the records.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import polars as pl
import polars_hash as plh

from genlab.prep.clean import dedupe_key
from genlab.prep.schema import value_text


def splitmix64(x: np.ndarray) -> np.ndarray:
    """A bijective 64-bit mixer (SplitMix64's finalizer) on a uint64 array, in place; returns it."""
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def _name_hash(name: str, half: int) -> np.uint64:
    digest = hashlib.blake2b(f"{half}:{name}".encode(), digest_size=8).digest()
    return np.uint64(int.from_bytes(digest, "little"))


def number_text(value: int | float) -> str:
    """A number as it is hashed: 1 and 1.0 alike (JSON does not tell them apart, nor do Arrow's readers)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        value = int(value)
    return f"\x01num:{value if isinstance(value, int) else repr(value)}"


def typed_text(value) -> str:
    """A typed value as it is hashed: its type goes with it, so that 1, "1" and true stay different records."""
    if type(value) is str:
        return value
    if type(value) in (int, float):
        return number_text(value)
    return f"\x01{type(value).__name__}:{value_text(value)}"


def _canonical(values: pd.Series, typed: bool) -> np.ndarray:
    if not typed:
        return values.fillna("").to_numpy(dtype=object)
    return np.array([typed_text(v) for v in values.tolist()], dtype=object)


def polars_string_hashes(strings: pl.Series) -> np.ndarray:
    """(n,) polars String series without nulls -> (n, 2) uint64: its XXH3-128 hashes (stable across versions)."""
    whole = plh.col("s").nchash.xxh3_128()
    two_64 = pl.lit(2**64, pl.UInt128)
    halves = strings.rename("s").to_frame().select(
        (whole % two_64).cast(pl.UInt64).alias("low"), (whole // two_64).cast(pl.UInt64).alias("high"))
    return halves.to_numpy().astype(np.uint64, copy=False).reshape(len(strings), 2)


def string_hashes(strings: np.ndarray) -> np.ndarray:
    """(n,) object array of str -> (n, 2) uint64: a 128-bit hash of each string."""
    return polars_string_hashes(pl.Series(strings, dtype=pl.String))


def add_column_hashes(total: np.ndarray, column: str, hashes: np.ndarray, present: np.ndarray) -> None:
    """Add one column's value hashes, mixed with its name, to the records' hashes `total` (in place)."""
    with np.errstate(over="ignore"):
        for half in range(2):
            mixed = splitmix64(hashes[:, half] ^ _name_hash(column, half))  # a fresh array: mixed in place
            total[:, half] += np.where(present, mixed, np.uint64(0))


def record_hashes(chunk: pd.DataFrame, columns: list[str], typed: bool) -> np.ndarray:
    """(n, 2) uint64: a 128-bit hash of each row over `columns` (see the module docstring)."""
    total = np.zeros((len(chunk), 2), np.uint64)
    for column in columns:
        if column in chunk.columns:
            values = chunk[column]
            add_column_hashes(total, column, string_hashes(_canonical(values, typed)),
                              values.notna().to_numpy(dtype=bool))
    return total


def text_hashes(texts: list[str | None]) -> np.ndarray:
    """(n, 2) uint64 hashes of each text's `dedupe_key` (missing text hashes as empty text)."""
    return string_hashes(np.array([dedupe_key(t or "") for t in texts], dtype=object))


def first_occurrences(hashes: np.ndarray, block: int = 1 << 20) -> np.ndarray:
    """(n, 2) uint64 -> (n,) bool: True for the first row of every distinct hash, in row order.

    Memory: 8 bytes per row for a sorted copy of one half, nothing per row beyond that.
    """
    n = len(hashes)
    keep = np.ones(n, bool)
    if n < 2:
        return keep
    # Values of the first half that occur more than once (true duplicates, nearly always)...
    low = np.sort(hashes[:, 0])
    repeated = np.unique(low[1:][low[1:] == low[:-1]])
    del low
    if not repeated.size:
        return keep
    # ...the rows that hold them, found block by block to keep the lookup's arrays small (Polars' hashed
    # lookup: 12x numpy's searchsorted on 13.6M rows)...
    wanted = pl.Series(repeated).implode()
    rows = np.concatenate([start + np.flatnonzero(pl.Series(hashes[start : start + block, 0]).is_in(wanted).to_numpy())
                           for start in range(0, n, block)])
    # ...and among those, every full 128-bit hash seen before in row order goes.
    sub = hashes[rows]
    sub_order = np.lexsort((sub[:, 1], sub[:, 0]))  # stable: equal hashes stay in row order
    ordered = sub[sub_order]
    repeat = (ordered[1:] == ordered[:-1]).all(axis=1)
    keep[rows[sub_order[1:][repeat]]] = False
    return keep
