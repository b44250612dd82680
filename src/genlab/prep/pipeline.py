"""`prepare`: a messy table or folder in, a clean, split dataset folder out.

Steps, always in this order; each runs only when its options ask for it,
except read, split and write:

    read       CSV, JSON, JSONL, Parquet, HDF5, a folder of text files or of images
    clean      text presets and --clean-regex on the --text-col
    dropna     drop rows missing any --dropna column (blank text counts as missing)
    dedupe     exact duplicate records, then records whose normalized text repeats
    labels     --label-col values: in --labels, each at least --min-label-count
    split      train/val/test by --split ratios, seeded, optionally --stratify'd
    fill       --fill missing values with train statistics (or a constant)
    normalize  --normalize numeric columns with train statistics
    augment    --augment the train split, --augment-factor times as many records
    write      train/val/test in --format, + .txt (text) or PNG folders (images)

Cleaning comes first so that text cleaned down to nothing counts as missing and
texts that differ only in what cleaning removes count as duplicates.

The input is read in chunks, up to three times, so memory stays bounded:
    1. scan   the kind of every column; clean, dropna; per record a 16-byte hash
              (dedupe, split order) and label/stratum codes; label checks.
              Then in memory: dedupe, label counts, split: one byte per input row.
    2. fit    (only for --fill mean/median/mode and --normalize) train statistics.
    3. write  every split, filled, normalized, augmented.
A JSON array is the exception: it is parsed whole.

Everything is built in a temporary folder beside --out that replaces --out only
when complete: after an error nothing is left behind, and an older prepared
dataset there is untouched.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import importlib.metadata
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
from genlab.core.progress import progress_bar

from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write_json
from genlab.core.folders import check_target, marker_kind, replacing
from genlab.prep.columnar import FORMATS as POLARS_FORMATS, PolarsEngine, Unsupported
from genlab.prep.augment import ImageAugmenter, TextAugmenter, load_synonyms, parse_ops
from genlab.prep.dedupe import first_occurrences, record_hashes, text_hashes
from genlab.prep.folders import FOLDER_FORMATS, ImageFolderWriter, folder_files, folder_kind, has_class_folders
from genlab.prep.near import bands, near_duplicates, signatures
from genlab.prep.formats import Format, FORMATS, TextCorpusWriter, WRITTEN, format_of
from genlab.prep.recipe import Recipe
from genlab.prep.schema import KindTracker, Schema, coerce, convert, missing_mask, value_text
from genlab.prep.split import SPLITS, assign_splits, rank_keys
from genlab.prep.stats import TrainStats, apply_stats, load_stats, output_kinds

DROPPED = 255  # split code of a row that dropna or dedupe removed
MISSING_LABEL = "<missing>"  # how a missing label is named in counts


def genlab_version() -> str:
    try:
        return importlib.metadata.version("genlab")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def input_sha256(path: Path) -> str:
    """sha256 of a file, or of a folder's listing: one `relative/path sha256` line per file."""
    if path.is_file():
        return file_sha256(path)
    listing = "".join(f"{p.relative_to(path).as_posix()} {file_sha256(p)}\n" for p in folder_files(path))
    return hashlib.sha256(listing.encode()).hexdigest()


class Input:
    """The input, read chunk by chunk as often as the passes need it, with a progress bar."""

    def __init__(self, path: Path, fmt: Format, chunk_rows: int, progress: bool):
        self.path, self.format, self.chunk_rows, self.progress = path, fmt, chunk_rows, progress

    def chunks(self, desc: str) -> Iterator[tuple[int, pd.DataFrame]]:
        """(index of the chunk's first row, raw chunk) for the whole input."""
        total = self.path.stat().st_size if self.format.progress_unit == "B" else None
        with progress_bar(total=total, unit=self.format.progress_unit, unit_scale=True, desc=desc,
                          enabled=self.progress) as bar:
            start = 0
            for chunk, position in self.format.read(self.path, self.chunk_rows):
                yield start, chunk
                bar.update(position - bar.n)
                start += len(chunk)


class PandasEngine:
    """Chunks as pandas frames (CSV text, or Python values), and what the passes need of them.
    The Polars engine (`columnar.PolarsEngine`) answers the same questions the same way, faster."""

    name = "pandas"

    def __init__(self, inp: Input):
        self.inp, self.typed = inp, inp.format.typed
        self.chunks = inp.chunks

    @staticmethod
    def columns(chunk: pd.DataFrame) -> list[str]:
        return list(chunk.columns)

    @staticmethod
    def observe(kinds: KindTracker, chunk: pd.DataFrame) -> None:
        kinds.observe(chunk)

    def cleaned(self, chunk: pd.DataFrame, recipe: Recipe) -> pd.DataFrame:
        return clean_text_column(chunk, recipe, self.typed)

    @staticmethod
    def missing(chunk: pd.DataFrame, column: str) -> np.ndarray:
        return missing_mask(chunk[column]) if column in chunk.columns else np.ones(len(chunk), bool)

    @staticmethod
    def take(chunk: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
        return chunk[rows]

    def hashes(self, chunk: pd.DataFrame, columns: list[str]) -> np.ndarray:
        return record_hashes(chunk, columns, self.typed)

    @staticmethod
    def texts(chunk: pd.DataFrame, column: str) -> list[str | None]:
        return chunk[column].tolist() if column in chunk.columns else [None] * len(chunk)

    @staticmethod
    def label_texts(chunk: pd.DataFrame, column: str) -> list[str | None]:
        return _label_texts(chunk[column]) if column in chunk.columns else [None] * len(chunk)

    def coerced(self, chunk: pd.DataFrame, schema: Schema, recipe: Recipe) -> pd.DataFrame:
        return clean_text_column(coerce(chunk, schema, self.typed), recipe, self.typed)


def make_passes(recipe: Recipe, inp: Input):
    """The passes on the engine `--engine` names, where it reads this input; else on the pandas engine."""
    if recipe.engine == "dask" and inp.format.name in POLARS_FORMATS:
        from genlab.prep.distributed import DaskPasses  # imports dask only when asked for
        return DaskPasses(inp, recipe)
    if recipe.engine in ("polars", "dask") and inp.format.name in POLARS_FORMATS:
        return LocalPasses(inp, PolarsEngine(inp.path, inp.format.name, inp.chunk_rows, inp.progress))
    return LocalPasses(inp, PandasEngine(inp))


def resolve_format(path: Path, given: str | None) -> Format:
    """The input's format: `given` (--input-format), else a folder's content or a file's extension."""
    known = {**FORMATS, **FOLDER_FORMATS}
    if not path.exists():
        raise GenlabError(f"{path}: no such file or folder")
    if given is not None:
        if given not in known:
            raise GenlabError(f"--input-format {given}: choose from {', '.join(known)}")
        if (given in FOLDER_FORMATS) != path.is_dir():
            raise GenlabError(f"{path}: --input-format {given} needs a {'folder' if given in FOLDER_FORMATS else 'file'}")
        return known[given]
    return known[folder_kind(path) if path.is_dir() else format_of(path)]


def check_columns(path: Path, columns: list[str], recipe: Recipe) -> None:
    """One line naming the flag and the column when an option names a column the input lacks."""
    for column, flag in recipe.columns_used().items():
        if column not in columns:
            raise GenlabError(f"{path}: no column {column!r} ({flag}); columns: {', '.join(columns)}")


def check_kinds(schema: Schema, recipe: Recipe) -> None:
    numeric = [("--normalize", c) for c in recipe.normalize]
    numeric += [("--fill", f.column) for f in recipe.fill if f.strategy in ("mean", "median")]
    for flag, column in numeric:
        if schema[column] not in ("int", "float"):
            raise GenlabError(f"{flag} {column}: the column holds {schema[column]} values, not numbers")


def check_out(out: Path, source: Path) -> None:
    """Refuse an --out that is not absent, empty or an earlier prepared dataset, or that holds the input."""
    check_target(out, [source])
    if out.is_dir() and any(out.iterdir()):
        kind = marker_kind(out)
        if kind is None:
            raise GenlabError(f"--out {out}: holds files genlab did not make (no .genlab marker); choose a new folder")
        if kind != "prepared":
            raise GenlabError(f"--out {out}: is a genlab {kind} folder, not a prepared dataset; choose another --out")


class Scan:
    """What pass 1 learns: kinds, which rows survive dropna, and per surviving row its hashes and codes."""

    def __init__(self, typed: bool, forced: Schema, coded: list[str]):
        self.kinds = KindTracker(typed, forced)
        self.rows = 0
        self.valid: list[np.ndarray] = []
        self.hashes: list[np.ndarray] = []
        self.text_hashes: list[np.ndarray] = []
        self.signatures: list[np.ndarray] = []  # --dedupe-near: MinHash signatures of the kept rows' texts
        self.code_index: dict[str, dict] = {c: {} for c in coded}  # value text (None: missing) -> code
        self.first_rows: dict[str, list[int]] = {c: [] for c in coded}  # code -> input row where it first shows
        self.codes: dict[str, list[np.ndarray]] = {c: [] for c in coded}

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


def _label_texts(values: pd.Series) -> list[str | None]:
    missing = missing_mask(values)
    return [None if m else value_text(v) for v, m in zip(values.tolist(), missing)]


def clean_text_column(chunk: pd.DataFrame, recipe: Recipe, typed: bool) -> pd.DataFrame:
    """The chunk with its text column as text, cleaned (raw or coerced chunks alike)."""
    column = recipe.text_col
    if column is None or column not in chunk.columns:
        return chunk
    text = convert(chunk[column], "string", typed)
    return chunk.assign(**{column: recipe.cleaner.clean_column(text) if recipe.cleaner else text})


def in_order(work, chunks: Iterable[tuple[int, object]], threads: int) -> Iterator[tuple[int, object]]:
    """(first row, work(first row, chunk)) for every chunk, in order. With threads > 1, that many chunks are
    worked at once (Polars and numpy let go of the interpreter lock in their kernels), and no more chunks than
    that are held."""
    if threads <= 1:
        for start, chunk in chunks:
            yield start, work(start, chunk)
        return
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


def new_scan(fmt: Format, recipe: Recipe) -> Scan:
    coded = list(dict.fromkeys(c for c in (recipe.label_col, recipe.stratify) if c))
    forced = {**{c: "datetime" for c in recipe.parse_dates}, **({recipe.text_col: "string"} if recipe.text_col else {})}
    return Scan(fmt.typed, forced, coded)


def scan_chunk(start: int, chunk, engine, fmt: Format, path: Path, recipe: Recipe) -> Scan:
    """Pass 1 on one chunk (its rows counted from 0); `start`: its first row in the input."""
    result = new_scan(fmt, recipe)
    if start == 0 and fmt.fixed_columns:
        check_columns(path, engine.columns(chunk), recipe)
    engine.observe(result.kinds, chunk)
    chunk = engine.cleaned(chunk, recipe)
    dropped = np.zeros(len(chunk), bool)
    for column in recipe.dropna:
        dropped |= engine.missing(chunk, column)
    kept = engine.take(chunk, ~dropped)
    result.valid.append(~dropped)
    hashed = [c for c in engine.columns(kept) if c not in fmt.identity_columns]
    result.hashes.append(engine.hashes(kept, hashed))
    if recipe.dedupe_text:
        result.text_hashes.append(text_hashes(engine.texts(kept, recipe.text_col)))
    if recipe.dedupe_near:
        result.signatures.append(signatures(engine.texts(kept, recipe.text_col)))
    for column in result.code_index:
        result.add_codes(column, engine.label_texts(kept, column), np.flatnonzero(~dropped))
    result.rows = len(chunk)
    return result


def scan_chunks(chunks: Iterable[tuple[int, object]], engine, fmt: Format, path: Path, recipe: Recipe,
                threads: int = 1) -> Scan:
    """Pass 1 over `chunks` ((first row, chunk) pairs, rows counted from the start of what they cover)."""
    found = new_scan(fmt, recipe)
    work = functools.partial(scan_chunk, engine=engine, fmt=fmt, path=path, recipe=recipe)
    for start, part in in_order(work, chunks, threads):
        found.extend(part, start)
    return found


def check_scan(found: Scan, path: Path, recipe: Recipe) -> None:
    """The checks that need the whole scan: some records, and labels that are allowed (the first bad row)."""
    if not found.rows:
        raise GenlabError(f"{path}: no records")
    if recipe.label_col is None or recipe.labels is None:
        return
    allowed = set(recipe.labels)
    bad = [(row, value) for value, row in zip(found.code_index[recipe.label_col], found.first_rows[recipe.label_col])
           if value not in allowed]
    if bad:
        row, value = min(bad)
        if value is None:
            raise GenlabError(f"{path}: row {row + 1}: {recipe.label_col} is missing "
                              f"(drop such rows with --dropna {recipe.label_col})")
        raise GenlabError(f"{path}: row {row + 1}: {recipe.label_col} {value!r} is not one of "
                          f"{', '.join(recipe.labels)}")


class Steps:
    """The record of what ran: the `steps` list of pipeline.json."""

    def __init__(self):
        self.steps: list[dict] = []

    def add(self, step: str, params: dict, rows_in: int, rows_out: int, **extra) -> None:
        self.steps.append({"step": step, "params": params, "rows_in": rows_in, "rows_out": rows_out, **extra})


def dedupe(found: Scan, recipe: Recipe, steps: Steps) -> tuple[np.ndarray, np.ndarray]:
    """-> per row that survived dropna: kept by dedupe?; per kept row: its split rank key."""
    hashes = np.concatenate(found.hashes)
    found.hashes.clear()  # memory: the chunks' copies go before the sort needs its own
    keep = first_occurrences(hashes) if recipe.dedupe else np.ones(len(hashes), bool)
    exact_removed = int((~keep).sum())
    if recipe.dedupe_text:
        texts = np.concatenate(found.text_hashes)
        found.text_hashes.clear()
        rows = np.flatnonzero(keep)
        keep[rows[~first_occurrences(texts[rows])]] = False
        del texts, rows
    text_removed = int((~keep).sum()) - exact_removed
    if recipe.dedupe_near:
        rows = np.flatnonzero(keep)
        keep[rows[near_duplicates(np.concatenate(found.signatures)[rows], recipe.dedupe_near)]] = False
        found.signatures.clear()
    if recipe.dedupe or recipe.dedupe_text or recipe.dedupe_near:
        params = {"exact": recipe.dedupe, "normalized_text": recipe.text_col if recipe.dedupe_text else None,
                  "near": {"column": recipe.text_col, "threshold": recipe.dedupe_near, "bands": list(bands(recipe.dedupe_near))}
                  if recipe.dedupe_near else None}
        removed = {"exact": exact_removed, "normalized_text": text_removed,
                   "near": int((~keep).sum()) - exact_removed - text_removed}
        steps.add("dedupe", params, len(keep), int(keep.sum()), removed=removed)
    return keep, rank_keys(hashes, recipe.seed)[keep]


def label_counts(found: Scan, keep: np.ndarray, recipe: Recipe, steps: Steps) -> None:
    if not recipe.label_col:
        return
    names = list(found.code_index[recipe.label_col])
    counted = np.bincount(found.code_array(recipe.label_col)[keep], minlength=len(names))
    counts = {MISSING_LABEL if name is None else name: int(n) for name, n in zip(names, counted)}
    for label in recipe.labels or ():
        counts.setdefault(label, 0)
    for label, n in sorted(counts.items()):
        if n < recipe.min_label_count:
            raise GenlabError(f"{recipe.label_col} {label!r}: {n} records, fewer than --min-label-count "
                              f"{recipe.min_label_count}")
    params = {"column": recipe.label_col, "allowed": list(recipe.labels) if recipe.labels else None,
              "min_count": recipe.min_label_count}
    n = int(keep.sum())
    steps.add("labels", params, n, n, counts=dict(sorted(counts.items())))


def split(found: Scan, valid: np.ndarray, keep: np.ndarray, keys: np.ndarray, recipe: Recipe, steps: Steps) -> np.ndarray:
    """`keys`: per kept row (overwritten). -> (input rows,) uint8: 0 train, 1 val, 2 test, DROPPED."""
    strata = found.code_array(recipe.stratify)[keep] if recipe.stratify else np.zeros(len(keys), np.int32)
    assigned = assign_splits(keys, strata, recipe.split)
    counts = {name: int((assigned == code).sum()) for code, name in enumerate(SPLITS)}
    # Spread back with masks, not index arrays: 1 byte per row.
    survivors = np.full(len(keep), DROPPED, np.uint8)
    survivors[keep] = assigned
    assignment = np.full(len(valid), DROPPED, np.uint8)
    assignment[valid] = survivors
    params = {"ratios": list(recipe.split), "seed": recipe.seed, "stratify": recipe.stratify}
    steps.add("split", params, len(keys), len(keys), splits=counts)
    return assignment


def train_stats(recipe: Recipe, schema: Schema) -> TrainStats:
    return TrainStats(schema, list(recipe.fill), list(recipe.normalize), recipe.norm_method)


def fit_chunks(chunks: Iterable[tuple[int, object]], engine, schema: Schema, assignment: np.ndarray,
               recipe: Recipe, threads: int = 1) -> TrainStats:
    """Pass 2 over `chunks`; `assignment` covers the same rows."""
    fitter = train_stats(recipe, schema)
    needed = {c: k for c, k in schema.items() if c in fitter.moments or c in fitter.counts}

    def fit_chunk(start: int, chunk) -> TrainStats:
        part = train_stats(recipe, schema)
        train = engine.take(chunk, assignment[start : start + len(chunk)] == 0)
        if len(train):
            part.update(engine.coerced(train, needed, recipe))
        return part

    for _, part in in_order(fit_chunk, chunks, threads):
        fitter.merge(part)
    return fitter


def saved_stats(path: Path, schema: Schema) -> dict:
    """--apply-stats: statistics of an earlier run, checked against this input's columns."""
    stats = load_stats(path)
    for column in [*stats["fill"], *stats["normalize"]["columns"]]:
        if column not in schema:
            raise GenlabError(f"{path}: names column {column!r}, which this input lacks")
    for column in stats["normalize"]["columns"]:
        if schema[column] not in ("int", "float"):
            raise GenlabError(f"{path}: normalizes {column!r}, which holds {schema[column]} values here")
    return stats


class Augmentation:
    """The augment step: which records get copies, and how text copies are made."""

    def __init__(self, recipe: Recipe, images: bool):
        self.factor = recipe.augment_factor
        self.ops = parse_ops(list(recipe.augment), images, recipe.synonyms is not None)
        if not images and recipe.text_col is None:
            raise GenlabError("--augment needs --text-col (the text to augment)")
        synonyms = load_synonyms(recipe.synonyms) if recipe.synonyms else {}
        self.text = None if images else TextAugmenter(self.ops, recipe.augment_rate, synonyms, recipe.seed)
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


def write_splits(inp: Input, parts: Iterable[tuple[str, pd.DataFrame, np.ndarray, np.ndarray]], work: Path,
                 out_kinds: Schema, recipe: Recipe, augmentation: Augmentation | None) -> dict[str, int]:
    """Pass 3's records, in input order, into every split's files (+ .txt or PNG folders). -> records per split."""
    images = inp.format.name == "images"
    writers = {s: FORMATS[recipe.format].writer(work / f"{s}{FORMATS[recipe.format].extension}", out_kinds) for s in SPLITS}
    corpora = {s: TextCorpusWriter(work / f"{s}.txt") for s in SPLITS} if recipe.text_col else {}
    pictures = {s: ImageFolderWriter(work, s, inp.path, recipe.label_col, augmentation and augmentation.images)
                for s in SPLITS} if images else {}
    written = dict.fromkeys(SPLITS, 0)
    try:
        for name, part, rows, copies in parts:
            if images:
                part = pictures[name].write(part, rows, copies)
            if isinstance(part, pd.DataFrame):
                part = part.reset_index(drop=True)
            writers[name].write(part)
            if corpora:
                corpora[name].write(part[recipe.text_col])
            written[name] += len(part)
    finally:
        for writer in [*writers.values(), *corpora.values()]:
            writer.close()
    return written


class LocalPasses:
    """The three passes on this machine, chunk after chunk of one engine (the Polars engine's kernels run
    outside the interpreter lock: a chunk per core at once)."""

    def __init__(self, inp: Input, engine: PandasEngine | PolarsEngine):
        self.inp, self.engine, self.name = inp, engine, engine.name
        self.threads = (os.cpu_count() or 1) if isinstance(engine, PolarsEngine) else 1

    def scan(self, recipe: Recipe) -> Scan:
        return scan_chunks(self.engine.chunks("scan"), self.engine, self.inp.format, self.inp.path, recipe,
                           self.threads)

    def fit(self, schema: Schema, assignment: np.ndarray, recipe: Recipe) -> TrainStats:
        return fit_chunks(self.engine.chunks("fit"), self.engine, schema, assignment, recipe, self.threads)

    def parts(self, schema: Schema, stats: dict, assignment: np.ndarray, recipe: Recipe,
              augmentation: Augmentation | None) -> Iterator[tuple[str, object, np.ndarray, np.ndarray]]:
        return split_parts(self.engine.chunks("write"), self.engine, 0, schema, stats, assignment, recipe,
                           augmentation, self.threads)

    def close(self) -> None:
        pass


def _run(source: Path, fmt: Format, recipe: Recipe, work: Path, progress: bool) -> dict:
    inp = Input(source, fmt, recipe.chunk_rows, progress)
    if recipe.cleaner and not recipe.text_col:
        raise GenlabError("--clean and --clean-regex need --text-col")
    augmentation = Augmentation(recipe, fmt.name == "images") if recipe.augment and recipe.augment_factor > 1 else None
    passes = make_passes(recipe, inp)
    try:
        return _stages(passes, source, fmt, recipe, work, augmentation)
    except Unsupported:  # read on as pandas would: the pandas engine reads it, or names the fault
        passes.close()
        passes = LocalPasses(inp, PandasEngine(inp))
        return _stages(passes, source, fmt, recipe, work, augmentation)
    finally:
        passes.close()


def _stages(passes, source: Path, fmt: Format, recipe: Recipe, work: Path, augmentation: Augmentation | None) -> dict:
    # Long on purpose: the pipeline's stages in order, each a call, so the whole flow reads in one place.
    images = fmt.name == "images"
    inp = passes.inp
    steps = Steps()
    found = passes.scan(recipe)
    check_scan(found, source, recipe)
    schema = found.kinds.schema()
    check_columns(source, list(schema), recipe)
    check_kinds(schema, recipe)
    steps.add("read", {"format": fmt.name, "chunk_rows": recipe.chunk_rows, "engine": passes.name}, found.rows,
              found.rows)
    if recipe.cleaner:
        params = {"column": recipe.text_col, "steps": recipe.cleaner.order, "regex": recipe.clean_regex,
                  "replace": recipe.clean_replace if recipe.clean_regex else None}
        steps.add("clean", params, found.rows, found.rows)
    valid = np.concatenate(found.valid)
    if recipe.dropna:
        steps.add("dropna", {"columns": list(recipe.dropna)}, found.rows, int(valid.sum()))

    keep, keys = dedupe(found, recipe, steps)
    label_counts(found, keep, recipe, steps)
    assignment = split(found, valid, keep, keys, recipe, steps)
    rows_read = found.rows
    del found, keys, keep, valid  # the per-record arrays; only the assignment is needed from here
    n = int((assignment != DROPPED).sum())

    if recipe.apply_stats:
        stats = saved_stats(recipe.apply_stats, schema)
        stats_source = {"apply_stats": str(recipe.apply_stats), "sha256": file_sha256(recipe.apply_stats)}
    else:
        fitter = train_stats(recipe, schema)
        if fitter.moments or fitter.counts:  # a pass only when a statistic needs the values
            fitter = passes.fit(schema, assignment, recipe)
        fitter.rows = int((assignment == 0).sum())
        stats = fitter.result()
        stats_source = {"fitted_on": "train"}
    if stats["fill"]:
        steps.add("fill", {"columns": {c: f["strategy"] for c, f in stats["fill"].items()}, **stats_source}, n, n)
    if stats["normalize"]["columns"]:
        params = {"method": stats["normalize"]["method"], "columns": list(stats["normalize"]["columns"]), **stats_source}
        steps.add("normalize", params, n, n)

    written_kinds = {**output_kinds(schema, stats), **({"augmented": "bool"} if augmentation else {})}
    parts = passes.parts(schema, stats, assignment, recipe, augmentation)
    written = write_splits(inp, parts, work, written_kinds, recipe, augmentation)
    if augmentation:
        params = {"ops": list(augmentation.ops), "factor": augmentation.factor, "seed": recipe.seed,
                  "rate": recipe.augment_rate if not images else None,
                  "synonyms": {"path": str(recipe.synonyms), "sha256": file_sha256(recipe.synonyms)}
                  if recipe.synonyms else None}
        steps.add("augment", params, n, sum(written.values()), added=sum(written.values()) - n)

    extension = FORMATS[recipe.format].extension
    files = {}
    for name in SPLITS:
        outputs = [f"{name}{extension}"] + ([f"{name}.txt"] if recipe.text_col else [])
        for output in outputs:
            files[output] = {"records": written[name], "sha256": file_sha256(work / output)}
        if images:
            files[f"{name}/"] = {"records": written[name], "kind": "PNG images"}
    steps.add("write", {"format": recipe.format}, sum(written.values()), sum(written.values()), files=files)

    record = {
        "genlab_version": genlab_version(),
        "input": {"path": str(source), "format": fmt.name, "sha256": input_sha256(source), "records": rows_read},
        "format": recipe.format,
        "text_col": recipe.text_col,
        "label_col": recipe.label_col,
        # A list, not an object: pipeline.json is written with sorted keys, and column order matters.
        "columns": [{"name": c, "kind": k, "written_as": WRITTEN[recipe.format][k]} for c, k in written_kinds.items()],
        "splits": written,
        "steps": steps.steps,
    }
    atomic_write_json(work / "normalization.json", stats)
    atomic_write_json(work / "pipeline.json", record)
    return record


def prepare(source: str | Path, out: str | Path, *, progress: bool = True, **options) -> dict:
    """Prepare `source` (a file or folder) into the folder `out`; returns what pipeline.json holds.

    `options` are those of `genlab data prepare` with underscores (text_col="text",
    split="70/15/15", dedupe=True, ...; see `Recipe.make` and docs/prep.md).
    Writes train/val/test.<format>, .txt files (with a text column) or
    train/val/test/<label>/*.png (images), normalization.json and pipeline.json.
    Raises GenlabError, leaving `out` as it was, on any bad input or option.
    """
    source, out = Path(source), Path(out)
    recipe = Recipe.make(**options)
    fmt = resolve_format(source, recipe.input_format)
    if fmt.name == "textdir" and recipe.text_col is None:
        recipe = recipe.model_copy(update={"text_col": "text"})
    if fmt.name in FOLDER_FORMATS and recipe.label_col is None and has_class_folders(source):
        recipe = recipe.model_copy(update={"label_col": "label"})
    check_out(out, source)
    with replacing(out, "prepared") as work:
        return _run(source, fmt, recipe, work, progress)
