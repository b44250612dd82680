"""The three passes of `genlab data prepare` over chunks, and what they hand on: the functions every engine's
chunks go through, on this machine (`pipeline.LocalPasses`) or on Dask's workers (`distributed.DaskPasses`).

    scan   `scan_chunk`: a chunk's kinds, cleaned text, dropna, record hashes, label codes -> a `Scan`;
           `Scan.extend` joins the scans of consecutive chunks (or partitions) in input order
    fit    `fit_chunks`: the train split's statistics, merged in order (exact sums: order does not matter)
    write  `split_chunk`: a chunk's records per split, filled, normalized and augmented

`in_order` works chunks on several threads where the engine's kernels let go of the interpreter lock and
hands the results on in input order, so threads change nothing in the output.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from genlab.core.errors import GenlabError
from genlab.prep.augment import ImageAugmenter, TextAugmenter, load_synonyms, parse_ops
from genlab.prep.dedupe import text_hashes
from genlab.prep.formats import Format
from genlab.prep.near import signatures
from genlab.prep.recipe import Recipe
from genlab.prep.schema import KindTracker, Schema, check_longest, check_width
from genlab.prep.split import SPLITS
from genlab.prep.stats import TrainStats, apply_stats, output_kinds


def check_columns(path: Path, columns: list[str], recipe: Recipe) -> None:
    """One line naming the flag and the column when an option names a column the input lacks."""
    for column, flag in recipe.columns_used().items():
        if column not in columns:
            shown = ", ".join(columns[:20]) + (f", ... ({len(columns)} in all)" if len(columns) > 20 else "")
            raise GenlabError(f"{path}: no column {column!r} ({flag}); columns: {shown}")


class Scan:
    """What pass 1 learns: kinds, which rows survive dropna, and per surviving row its hashes and codes."""

    def __init__(self, typed: bool, forced: Schema, coded: list[str], settled: tuple[frozenset, frozenset] | None = None):
        self.kinds = KindTracker(typed, forced, settled)
        self.rows = 0
        self.valid: list[np.ndarray] = []
        self.hashes: list[np.ndarray] = []
        self.text_hashes: list[np.ndarray] = []
        self.signatures: list[np.ndarray] = []  # --dedupe-near: MinHash signatures of the kept rows' texts
        self.code_index: dict[str, dict] = {c: {} for c in coded}  # value text (None: missing) -> code
        self.first_rows: dict[str, list[int]] = {c: [] for c in coded}  # code -> input row where it first shows
        self.codes: dict[str, list[np.ndarray]] = {c: [] for c in coded}
        self.cleaned = None  # a chunk's scan: the chunk as cleaned, for `scan_chunks`' `keep`

    def add_codes(self, column: str, values: list[str | None] | pl.Series, rows: np.ndarray) -> None:
        index, first = self.code_index[column], self.first_rows[column]
        if isinstance(values, pl.Series):  # a Polars column: numbered a distinct value at a time
            distinct = values.unique(maintain_order=True)
            numbers = np.array([index.setdefault(v, len(index)) for v in distinct.to_list()], np.int32)
            present = distinct.drop_nulls()
            local = values.replace_strict(present, pl.Series(np.flatnonzero(distinct.is_not_null().to_numpy())),
                                          default=None, return_dtype=pl.Int64)
            gap = int(np.flatnonzero(distinct.is_null().to_numpy())[0]) if distinct.null_count() else 0
            codes = numbers[local.fill_null(gap).to_numpy()]
        else:
            codes = np.fromiter((index.setdefault(v, len(index)) for v in values), np.int32, len(values))
        new = np.flatnonzero(codes >= len(first))
        if new.size:  # codes are numbered in order of appearance: the first row of each new one
            _, at = np.unique(codes[new], return_index=True)
            first.extend(rows[new[at]].tolist())
        self.codes[column].append(codes)

    def extend(self, other: "Scan", offset: int) -> None:
        """Append the scan of the input's next part, whose first row is row `offset` of the input."""
        self.kinds.merge(other.kinds)
        self.valid += other.valid
        self.hashes += other.hashes
        self.text_hashes += other.text_hashes
        self.signatures += other.signatures
        for column, index in other.code_index.items():
            values = list(index)
            rows = offset + np.array(other.first_rows[column], np.int64)
            mapping = np.fromiter((self.code_index[column].setdefault(v, len(self.code_index[column])) for v in values),
                                  np.int32, len(values))
            self.first_rows[column] += rows[mapping >= len(self.first_rows[column])].tolist()
            self.codes[column] += [mapping[codes] for codes in other.codes[column]]
        self.rows = offset + other.rows

    def code_array(self, column: str) -> np.ndarray:
        return np.concatenate(self.codes[column]) if self.codes[column] else np.zeros(0, np.int32)


def read_ahead(items: Iterable, depth: int) -> Iterator:
    """`items`, each produced on a thread of its own up to `depth` items ahead of the one handed on (so that
    reading and parsing the input, whose parsers let go of the interpreter lock, overlap the work on what
    was read)."""
    iterator, end = iter(items), object()
    with ThreadPoolExecutor(1) as reader:  # one thread: the items come in order
        ahead = collections.deque(reader.submit(next, iterator, end) for _ in range(depth))
        while (item := ahead.popleft().result()) is not end:
            ahead.append(reader.submit(next, iterator, end))
            yield item


def in_order(work, chunks: Iterable[tuple[int, object]], threads: int) -> Iterator[tuple[int, object]]:
    """(first row, work(first row, chunk)) for every chunk, in order. With threads > 1, that many chunks are
    worked at once (Polars and numpy let go of the interpreter lock in their kernels) while the next is read,
    and no more chunks than that are held."""
    if threads <= 1:
        for start, chunk in chunks:
            yield start, work(start, chunk)
        return
    chunks = read_ahead(chunks, 1)
    with ThreadPoolExecutor(threads) as pool:
        pending: collections.deque = collections.deque()
        for start, chunk in chunks:
            if len(pending) == threads:
                first, result = pending.popleft()
                yield first, result.result()
            pending.append((start, pool.submit(work, start, chunk)))
        while pending:
            first, result = pending.popleft()
            yield first, result.result()


def new_scan(fmt: Format, recipe: Recipe, settled: tuple[frozenset, frozenset] | None = None) -> Scan:
    coded = list(dict.fromkeys(c for c in (recipe.label_col, recipe.stratify) if c))
    forced = {**{c: "datetime" for c in recipe.parse_dates}, **({recipe.text_col: "string"} if recipe.text_col else {})}
    return Scan(fmt.typed, forced, coded, settled)


def _kept(values: list | pl.Series, kept: np.ndarray) -> list | pl.Series:
    return values.filter(pl.Series(kept)) if isinstance(values, pl.Series) else [v for v, k in zip(values, kept) if k]


def scan_chunk(start: int, chunk, engine, fmt: Format, path: Path, recipe: Recipe, keep: bool = False,
               settled: tuple[frozenset, frozenset] | None = None) -> Scan:
    """Pass 1 on one chunk (its rows counted from 0); `start`: its first row in the input. `keep`: the scan
    holds the chunk as cleaned. `settled`: what the chunks before it settled (`KindTracker.settled`)."""
    result = new_scan(fmt, recipe, settled)
    check_width(path, engine.columns(chunk))
    check_longest(path, engine.longest(chunk))
    if start == 0 and fmt.fixed_columns:
        check_columns(path, engine.columns(chunk), recipe)
    engine.observe(result.kinds, chunk)
    chunk = engine.cleaned(chunk, recipe)
    dropped = np.zeros(len(chunk), bool)
    for column in recipe.dropna:
        dropped |= engine.missing(chunk, column)
    # Worked out for every row and then kept for the rows dropna keeps: cheaper than copying the chunk's rows.
    kept = ~dropped
    result.valid.append(kept)
    hashed = [c for c in engine.columns(chunk) if c not in fmt.identity_columns]
    result.hashes.append(engine.hashes(chunk, hashed)[kept])
    if recipe.dedupe_text:
        result.text_hashes.append(text_hashes(_kept(engine.texts(chunk, recipe.text_col), kept)))
    if recipe.dedupe_near:
        result.signatures.append(signatures(_kept(engine.texts(chunk, recipe.text_col), kept)))
    for column in result.code_index:
        result.add_codes(column, _kept(engine.label_texts(chunk, column), kept), np.flatnonzero(kept))
    result.rows = len(chunk)
    result.cleaned = chunk if keep else None
    return result


def scan_chunks(chunks: Iterable[tuple[int, object]], engine, fmt: Format, path: Path, recipe: Recipe,
                threads: int = 1, keep=None) -> Scan:
    """Pass 1 over `chunks` ((first row, chunk) pairs, rows counted from the start of what they cover).
    `keep`: called with each chunk as cleaned, in order."""
    found = new_scan(fmt, recipe)
    settled = [None]  # what the chunks joined so far settled: a chunk's scan skips it (read as it starts)

    def work(start: int, chunk) -> Scan:
        return scan_chunk(start, chunk, engine, fmt, path, recipe, keep is not None, settled[0])

    for start, part in in_order(work, chunks, threads):
        if keep is not None:
            keep(part.cleaned)
            part.cleaned = None
        found.extend(part, start)
        settled[0] = found.kinds.settled()
    return found


def train_stats(recipe: Recipe, schema: Schema) -> TrainStats:
    return TrainStats(schema, list(recipe.fill), list(recipe.normalize), recipe.norm_method)


def measured(recipe: Recipe, schema: Schema) -> Schema:
    """The columns whose train statistics the fit pass measures, and their kinds."""
    fitter = train_stats(recipe, schema)
    return {c: k for c, k in schema.items() if c in fitter.moments or c in fitter.counts}


def fit_chunks(chunks: Iterable[tuple[int, object]], engine, schema: Schema, assignment: np.ndarray,
               recipe: Recipe, threads: int = 1) -> TrainStats:
    """Pass 2 over `chunks` (which need hold only the `measured` columns); `assignment` covers the same rows."""
    fitter = train_stats(recipe, schema)
    needed = measured(recipe, schema)

    def fit_chunk(start: int, chunk) -> TrainStats:
        part = train_stats(recipe, schema)
        columns = [c for c in engine.columns(chunk) if c in needed]  # the text need not be copied
        if not columns:  # nothing measured is in this chunk
            return part
        train = engine.take(chunk[columns], assignment[start : start + len(chunk)] == 0)
        if len(train):
            part.update(engine.coerced(train, needed, recipe))
        return part

    for _, part in in_order(fit_chunk, chunks, threads):
        fitter.merge(part)
    return fitter


class Augmentation:
    """The augment step: which records get copies, and how text copies are made."""

    def __init__(self, recipe: Recipe, images: bool):
        self.factor = recipe.augment_factor
        self.ops = parse_ops(list(recipe.augment), images, recipe.synonyms is not None)
        if not images and recipe.text_col is None:
            raise GenlabError("--augment needs --text-col (the text to augment)")
        synonyms = load_synonyms(recipe.synonyms) if recipe.synonyms else {}
        collapsed = bool(recipe.cleaner) and recipe.cleaner.order[-1] == "collapse-space"
        self.text = None if images else TextAugmenter(self.ops, recipe.augment_rate, synonyms, recipe.seed, collapsed)
        self.images = ImageAugmenter(self.ops, recipe.seed) if images else None
        self.text_col = recipe.text_col

    def expand(self, part: pd.DataFrame | pl.DataFrame, rows: np.ndarray
               ) -> tuple[pd.DataFrame | pl.DataFrame, np.ndarray, np.ndarray]:
        """Each record followed by its factor-1 copies -> (records, input rows, copy numbers)."""
        n = len(part)
        repeat = np.repeat(np.arange(n), self.factor)
        copies = np.tile(np.arange(self.factor), n)
        rows = rows[repeat]
        if isinstance(part, pl.DataFrame):
            part = part[repeat]
            if self.text is not None:
                texts, copied = part[self.text_col], np.flatnonzero(copies > 0)
                augmented = self.text.augment_series(texts.gather(copied), rows[copied], copies[copied])
                part = part.with_columns(texts.scatter(copied, augmented))
            return part, rows, copies
        part = part.iloc[repeat]
        if self.text is not None:
            texts = part[self.text_col].tolist()
            copied = np.flatnonzero(copies > 0)
            augmented = self.text.augment([texts[i] for i in copied], rows[copied], copies[copied])
            for i, text in zip(copied.tolist(), augmented):
                texts[i] = text
            part = part.assign(**{self.text_col: pd.Series(texts, index=part.index, dtype=object)})
        return part, rows, copies


def split_chunk(start: int, chunk, engine, offset: int, schema: Schema, stats: dict, assignment: np.ndarray,
                recipe: Recipe, augmentation: Augmentation | None) -> list[tuple[str, object, np.ndarray, np.ndarray]]:
    """Pass 3's records of one chunk, split by split: (split, records, input rows, copy numbers), the records
    filled, normalized and augmented. `assignment` covers the chunks' rows; input row = offset + row."""
    kinds = output_kinds(schema, stats)
    assigned = assignment[start : start + len(chunk)]
    parts = []
    for code, name in enumerate(SPLITS):
        members = np.flatnonzero(assigned == code)
        if not members.size:
            continue
        part = apply_stats(engine.coerced(engine.take(chunk, assigned == code), schema, recipe), stats, kinds)
        rows, copies = offset + start + members, np.zeros(len(members), np.int64)
        if augmentation and name == "train":
            part, rows, copies = augmentation.expand(part, rows)
        if isinstance(part, pl.DataFrame):
            part = part.with_columns(augmented=pl.Series(copies > 0)) if augmentation else part
        elif augmentation:
            part = part.assign(augmented=pd.array(copies > 0, dtype="boolean"))
        parts.append((name, part, rows, copies))
    return parts


def split_parts(chunks: Iterable[tuple[int, object]], engine, offset: int, schema: Schema, stats: dict,
                assignment: np.ndarray, recipe: Recipe, augmentation: Augmentation | None, threads: int = 1
                ) -> Iterator[tuple[str, object, np.ndarray, np.ndarray]]:
    """`split_chunk` over `chunks`, in order."""
    work = functools.partial(split_chunk, engine=engine, offset=offset, schema=schema, stats=stats,
                             assignment=assignment, recipe=recipe, augmentation=augmentation)
    for _, parts in in_order(work, chunks, threads):
        yield from parts
