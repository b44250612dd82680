"""`prepare`: a messy table or folder in, a clean, split dataset folder out.

Steps, always in this order; each runs only when its options ask for it,
except read, split and write:

    read       CSV, JSON, JSONL, Parquet, HDF5, a folder of text files or of images
    clean      text presets and --clean-regex on the --text-col
    dropna     drop rows missing any --dropna column (blank text counts as missing)
    dedupe     exact duplicate records, then records whose normalized text repeats, then near duplicates
    labels     --label-col values: in --labels, each at least --min-label-count
    split      train/val/test by --split ratios, seeded, optionally --stratify'd
    fill       --fill missing values with train statistics (or a constant)
    normalize  --normalize numeric columns with train statistics
    augment    --augment the train split, --augment-factor times as many records
    write      train/val/test in --format, + .txt (text) or PNG folders (images)

Cleaning comes first so that text cleaned down to nothing counts as missing and
texts that differ only in what cleaning removes count as duplicates.

The data goes through in chunks, up to three times, so memory stays bounded (the Polars engine reads the
input once and the later passes read back the chunks its scan spilled, cleaned):
    1. scan   the kind of every column; clean, dropna; per record a 16-byte hash
              (dedupe, split order) and label/stratum codes; label checks.
              Then in memory: dedupe, label counts, split: one byte per input row.
    2. fit    (only for --fill mean/median/mode and --normalize) train statistics.
    3. write  every split, filled, normalized, augmented.
A JSON array is the exception: it is parsed whole. The passes' work on a chunk is in passes.py; an engine
(`PandasEngine` here, `columnar.PolarsEngine`) answers what it asks of a chunk, and `LocalPasses` or
`distributed.DaskPasses` runs the passes over the input.

Everything is built in a temporary folder beside --out that replaces --out only
when complete: after an error nothing is left behind, and an older prepared
dataset there is untouched.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import importlib.metadata
import os
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write_json, neither_file_nor_folder
from genlab.core.folders import check_target, marker_kind, replacing
from genlab.core.progress import progress_bar
from genlab.prep.columnar import FORMATS as POLARS_FORMATS, PolarsEngine, SpillFile, Unsupported
from genlab.prep.dedupe import first_occurrences, record_hashes
from genlab.prep.folders import FOLDER_FORMATS, ImageFolderWriter, folder_files, folder_kind, has_class_folders
from genlab.prep.formats import FORMATS, WRITTEN, Format, TextCorpusWriter, WriterThread, format_of
from genlab.prep.near import bands, near_duplicates
from genlab.prep.passes import (Augmentation, Scan, check_columns, fit_chunks, measured, scan_chunks, split_parts,
                                train_stats)
from genlab.prep.recipe import Recipe
from genlab.prep.schema import KindTracker, Schema, coerce, convert, missing_mask, value_text
from genlab.prep.split import SPLITS, assign_splits, rank_keys
from genlab.prep.stats import TrainStats, load_stats, output_kinds


DROPPED = 255  # split code of a row that dropna or dedupe removed
MISSING_LABEL = "<missing>"  # how a missing label is named in counts


def genlab_version() -> str:
    try:
        return importlib.metadata.version("genlab")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def file_sha256(path: Path, stop: threading.Event | None = None) -> str | None:
    """The file's sha256; None once `stop` is set."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            if stop is not None and stop.is_set():
                return None
            digest.update(block)
    return digest.hexdigest()


def input_sha256(path: Path, stop: threading.Event | None = None) -> str | None:
    """sha256 of a file, or of a folder's listing: one `relative/path sha256` line per file; None once `stop`
    is set."""
    if path.is_file():
        return file_sha256(path, stop)
    listing = "".join(f"{p.relative_to(path).as_posix()} {file_sha256(p, stop)}\n" for p in folder_files(path))
    return None if stop is not None and stop.is_set() else hashlib.sha256(listing.encode()).hexdigest()


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

    def chunks(self, desc: str, columns: list[str] | None = None) -> Iterator[tuple[int, pd.DataFrame]]:
        """Whole records, whatever `columns` names (the readers read records whole)."""
        return self.inp.chunks(desc)

    @staticmethod
    def columns(chunk: pd.DataFrame) -> list[str]:
        return list(chunk.columns)

    @staticmethod
    def observe(kinds: KindTracker, chunk: pd.DataFrame) -> None:
        kinds.observe(chunk)

    @staticmethod
    def longest(chunk: pd.DataFrame) -> tuple[str, int] | None:
        """(column, characters) of the longest text in the chunk; None without text."""
        sizes = []
        for column in chunk.columns:
            if chunk[column].dtype == object and len(chunk):
                with contextlib.suppress(AttributeError):  # a column of no text at all (typed JSON numbers)
                    longest = chunk[column].str.len().max()  # NaN where a value is not text
                    sizes.append((column, 0 if pd.isna(longest) else int(longest)))
        return max(sizes, key=lambda s: s[1], default=None)

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


def make_passes(recipe: Recipe, inp: Input, work: Path):
    """The passes on the engine `--engine` names, where it reads this input; else on the pandas engine.
    `work`: the folder being built, where a local scan may spill."""
    if recipe.engine == "dask" and inp.format.name in POLARS_FORMATS:
        from genlab.prep.distributed import DaskPasses  # imports dask only when asked for
        return DaskPasses(inp, recipe)
    if recipe.engine in ("polars", "dask") and inp.format.name in POLARS_FORMATS:
        return LocalPasses(inp, PolarsEngine(inp.path, inp.format.name, inp.chunk_rows, inp.progress), work)
    return LocalPasses(inp, PandasEngine(inp))


def resolve_format(path: Path, given: str | None) -> Format:
    """The input's format: `given` (--input-format), else a folder's content or a file's extension."""
    known = {**FORMATS, **FOLDER_FORMATS}
    if not (path.is_file() or path.is_dir()):
        raise GenlabError(neither_file_nor_folder(path))
    if given is not None:
        if given not in known:
            raise GenlabError(f"--input-format {given}: choose from {', '.join(known)}")
        if (given in FOLDER_FORMATS) != path.is_dir():
            raise GenlabError(f"{path}: --input-format {given} needs a {'folder' if given in FOLDER_FORMATS else 'file'}")
        return known[given]
    return known[folder_kind(path) if path.is_dir() else format_of(path)]


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


def joined(parts: list[np.ndarray]) -> np.ndarray:
    """The arrays in `parts` (which it empties) as one, each part freed once copied: the peak is the whole
    plus one part, not twice the whole."""
    whole = np.empty((sum(len(p) for p in parts), *parts[0].shape[1:]), parts[0].dtype) if parts else np.zeros(0)
    at, freed = 0, 0
    parts.reverse()
    while parts:
        part = parts.pop()
        whole[at : at + len(part)] = part
        at, freed = at + len(part), freed + part.nbytes
        del part
        if freed > 1 << 25:  # small parts live in the heap: hand their room back as it frees up
            release_freed_memory()
            freed = 0
    return whole


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, from the symbols this process already has; None elsewhere (musl, macOS)."""
    return getattr(ctypes.CDLL(None), "malloc_trim", None)


def release_freed_memory() -> None:
    """Hand memory freed by the passes back to the system (where it can be asked: glibc's heaps and Arrow's
    pool), so that the next stage's peak does not stand on the last one's leftovers. Measured on the 2 GB
    JSONL: the dedupe step's peak fell from 880 to 733 MiB, at no cost in time."""
    if (trim := _malloc_trim()) is not None:
        trim(0)
    pa.default_memory_pool().release_unused()


def dedupe(found: Scan, recipe: Recipe, steps: Steps) -> tuple[np.ndarray, np.ndarray]:
    """-> per row that survived dropna: kept by dedupe?; per kept row: its split rank key."""
    hashes = joined(found.hashes)
    keep = first_occurrences(hashes) if recipe.dedupe else np.ones(len(hashes), bool)
    exact_removed = int((~keep).sum())
    if recipe.dedupe_text:
        texts = joined(found.text_hashes)
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
    return keep, rank_keys(hashes, recipe.seed, keep)


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


def write_splits(inp: Input, parts: Iterable[tuple[str, pd.DataFrame, np.ndarray, np.ndarray]], work: Path,
                 out_kinds: Schema, recipe: Recipe, augmentation: Augmentation | None
                 ) -> tuple[dict[str, int], dict[str, str]]:
    """Pass 3's records, in input order, into every split's files (+ .txt or PNG folders).
    -> (records per split, sha256 per file name)."""
    images = inp.format.name == "images"
    output = FORMATS[recipe.format]
    pictures = {s: ImageFolderWriter(work, s, inp.path, recipe.label_col, augmentation and augmentation.images)
                for s in SPLITS} if images else {}
    written = dict.fromkeys(SPLITS, 0)
    files: dict[str, WriterThread] = {}
    with contextlib.ExitStack() as open_files:  # every writer closed, in order, however the pass ends
        for s in SPLITS:
            files[f"{s}{output.extension}"] = open_files.enter_context(
                WriterThread(output.writer(work / f"{s}{output.extension}", out_kinds)))
            if recipe.text_col:
                files[f"{s}.txt"] = open_files.enter_context(WriterThread(TextCorpusWriter(work / f"{s}.txt")))
        for name, part, rows, copies in parts:
            if images:
                part = pictures[name].write(part, rows, copies)
            if isinstance(part, pd.DataFrame):
                part = part.reset_index(drop=True)
            files[f"{name}{output.extension}"].write(part)
            if recipe.text_col:
                files[f"{name}.txt"].write(part[recipe.text_col])
            written[name] += len(part)
    return written, {file: writer.sha256 for file, writer in files.items()}


class LocalPasses:
    """The three passes on this machine, chunk after chunk of one engine. The Polars engine's kernels run
    outside the interpreter lock (a chunk per core at once), and where the disk has room its scan spills
    the cleaned chunks into `spill_folder` for the later passes to read back."""

    def __init__(self, inp: Input, engine: PandasEngine | PolarsEngine, spill_folder: Path | None = None):
        self.inp, self.engine, self.name = inp, engine, engine.name
        polars = isinstance(engine, PolarsEngine)
        self.threads = (os.cpu_count() or 1) if polars else 1
        fits = polars and spill_folder is not None and SpillFile.fits(spill_folder, inp.path.stat().st_size)
        self.spill = SpillFile(spill_folder / ".scanned.arrows") if fits else None

    def scan(self, recipe: Recipe) -> Scan:
        chunks = self.engine.chunks("scan")
        if not self.spill:
            return scan_chunks(chunks, self.engine, self.inp.format, self.inp.path, recipe, self.threads)
        with WriterThread(self.spill) as spill:
            found = scan_chunks(chunks, self.engine, self.inp.format, self.inp.path, recipe, self.threads, spill.write)
        if self.spill.usable:
            self.engine.read_spilled(self.spill)
        return found

    def fit(self, schema: Schema, assignment: np.ndarray, recipe: Recipe) -> TrainStats:
        chunks = self.engine.chunks("fit", list(measured(recipe, schema)))
        return fit_chunks(chunks, self.engine, schema, assignment, recipe, self.threads)

    def parts(self, schema: Schema, stats: dict, assignment: np.ndarray, recipe: Recipe,
              augmentation: Augmentation | None) -> Iterator[tuple[str, object, np.ndarray, np.ndarray]]:
        return split_parts(self.engine.chunks("write"), self.engine, 0, schema, stats, assignment, recipe,
                           augmentation, self.threads)

    def close(self) -> None:
        if self.spill:
            self.spill.remove()


def _run(source: Path, fmt: Format, recipe: Recipe, work: Path, progress: bool) -> dict:
    inp = Input(source, fmt, recipe.chunk_rows, progress)
    if recipe.cleaner and not recipe.text_col:
        raise GenlabError("--clean and --clean-regex need --text-col")
    augmentation = Augmentation(recipe, fmt.name == "images") if recipe.augment and recipe.augment_factor > 1 else None
    stop = threading.Event()  # a run that fails does not wait for its input's hash
    with ThreadPoolExecutor(1) as hashing:  # sha256 lets go of the interpreter lock: the input hashes beside the work
        input_hash = hashing.submit(input_sha256, source, stop)
        try:
            record = _on_an_engine(inp, recipe, work, augmentation)
        except BaseException:
            stop.set()
            raise
        record["input"]["sha256"] = input_hash.result()
    atomic_write_json(work / "pipeline.json", record)
    return record


def _on_an_engine(inp: Input, recipe: Recipe, work: Path, augmentation: Augmentation | None) -> dict:
    """The stages on the engine asked for, or on pandas where Polars cannot read the input as pandas would."""
    passes = make_passes(recipe, inp, work)
    try:
        return _stages(passes, inp.path, inp.format, recipe, work, augmentation)
    except Unsupported:  # read on as pandas would: the pandas engine reads it, or names the fault
        passes.close()
        passes = LocalPasses(inp, PandasEngine(inp))
        return _stages(passes, inp.path, inp.format, recipe, work, augmentation)
    finally:
        passes.close()


def _stages(passes, source: Path, fmt: Format, recipe: Recipe, work: Path, augmentation: Augmentation | None) -> dict:
    """The passes and the steps between them -> pipeline.json's record (but the input's sha256, worked out
    meanwhile by `_run`)."""
    # Long on purpose: the pipeline's stages in order, each a call, so the whole flow reads in one place.
    images = fmt.name == "images"
    inp = passes.inp
    steps = Steps()
    found = passes.scan(recipe)
    release_freed_memory()
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
    release_freed_memory()
    label_counts(found, keep, recipe, steps)
    assignment = split(found, valid, keep, keys, recipe, steps)
    rows_read = found.rows
    del found, keys, keep, valid  # the per-record arrays; only the assignment is needed from here
    release_freed_memory()
    n = int((assignment != DROPPED).sum())

    if recipe.apply_stats:
        stats = saved_stats(recipe.apply_stats, schema)
        stats_source = {"apply_stats": str(recipe.apply_stats), "sha256": file_sha256(recipe.apply_stats)}
    else:
        fitter = train_stats(recipe, schema)
        if fitter.moments or fitter.counts:  # a pass only when a statistic needs the values
            fitter = passes.fit(schema, assignment, recipe)
            release_freed_memory()
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
    written, digests = write_splits(inp, parts, work, written_kinds, recipe, augmentation)
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
            files[output] = {"records": written[name], "sha256": digests[output]}
        if images:
            files[f"{name}/"] = {"records": written[name], "kind": "PNG images"}
    steps.add("write", {"format": recipe.format}, sum(written.values()), sum(written.values()), files=files)

    record = {
        "genlab_version": genlab_version(),
        "input": {"path": str(source), "format": fmt.name, "sha256": None, "records": rows_read},
        "format": recipe.format,
        "text_col": recipe.text_col,
        "label_col": recipe.label_col,
        # A list, not an object: pipeline.json is written with sorted keys, and column order matters.
        "columns": [{"name": c, "kind": k, "written_as": WRITTEN[recipe.format][k]} for c, k in written_kinds.items()],
        "splits": written,
        "steps": steps.steps,
    }
    atomic_write_json(work / "normalization.json", stats)
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
