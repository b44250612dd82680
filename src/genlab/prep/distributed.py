"""`genlab data prepare --engine dask`: the pipeline's three passes on a Dask cluster.

The input (CSV or JSONL) is cut into partitions of whole records, byte ranges that Dask's workers read
themselves with the Polars engine, so every worker must see the file at the same path (a shared disk,
as Dask's own readers need). Each pass maps one function over the partitions, the very code the local
engines run over their chunks:

    scan   each partition's kinds, hashes, label codes (`scan_chunks`); the client joins them in order,
           then dedupes and splits in memory, as locally
    fit    each partition's train statistics (`fit_chunks`), merged in order
    write  each partition's records, filled, normalized and augmented (`split_parts`); the client writes
           them in input order, so the files are byte for byte those of the local engines

Cutting a CSV needs to know where records end: a newline ends one only outside quotes, so each cut
point moves to the first newline after it with an even number of quote characters before it (counted
on the workers, block by block). Without --address a local cluster of --workers processes starts and
stops with the run.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from genlab.core.errors import GenlabError
from genlab.core.progress import progress_bar
from genlab.prep.columnar import PolarsEngine, check_header, json_frames, parse_csv, record_end
from genlab.prep.passes import Augmentation, Scan, fit_chunks, new_scan, scan_chunks, split_parts, train_stats
from genlab.prep.recipe import Recipe
from genlab.prep.schema import Schema
from genlab.prep.stats import TrainStats

PARTITION_BYTES = 64 << 20  # at most this much input per partition; at least two partitions per worker


def _quote_count(path: Path, start: int, stop: int) -> int:
    with open(path, "rb") as f:
        f.seek(start)
        return f.read(stop - start).count(b'"')


def partitions(client, path: Path, fmt: str, count: int) -> tuple[bytes, list[tuple[int, int]]]:
    """(the CSV header, or b""; byte ranges of whole records covering the rest of the file)."""
    size = path.stat().st_size
    cuts = [size * k // count for k in range(count)]
    quoted = fmt == "csv"
    if quoted:
        counts = client.gather(client.map(_quote_count, [path] * count, cuts, cuts[1:] + [size]))
        before = np.concatenate([[0], np.cumsum(counts)[:-1]])
    else:
        before = np.zeros(count, np.int64)
    starts = client.gather(client.map(record_end, [path] * count, cuts, [bool(b % 2) for b in before],
                                      [quoted] * count))
    header_end = 0
    if quoted:
        header_end = starts[0]
        with open(path, "rb") as f:
            header = f.read(header_end)
    else:
        header = b""
    starts = sorted({header_end, *(s for s in starts[1:] if s > header_end)})
    ranges = [(a, b) for a, b in zip(starts, starts[1:] + [size]) if b > a]
    return header, ranges


class PartitionEngine(PolarsEngine):
    """The Polars engine over one partition: its chunks, rows counted from the partition's first."""

    def __init__(self, path: Path, fmt: str, chunk_rows: int, header: bytes, span: tuple[int, int]):
        super().__init__(path, fmt, chunk_rows, progress=False)
        self.header, self.span = header, span

    def chunks(self, desc: str = "") -> Iterator[tuple[int, pl.DataFrame]]:
        with open(self.path, "rb") as f:
            f.seek(self.span[0])
            body = f.read(self.span[1] - self.span[0])
        frames = json_frames(io.BytesIO(body), self.path) if self.typed else [parse_csv(self.header, body)]
        start = 0
        for frame in frames:
            for offset in range(0, len(frame), self.chunk_rows):
                chunk = frame.slice(offset, self.chunk_rows)
                yield start, chunk
                start += len(chunk)


# The work of each pass on one partition: what runs on a worker.

def _scan_partition(engine: PartitionEngine, fmt, path: Path, recipe: Recipe) -> Scan:
    return scan_chunks(engine.chunks(), engine, fmt, path, recipe)


def _fit_partition(engine: PartitionEngine, assignment: np.ndarray, schema: Schema, recipe: Recipe) -> TrainStats:
    return fit_chunks(engine.chunks(), engine, schema, assignment, recipe)


def _split_partition(engine: PartitionEngine, offset: int, assignment: np.ndarray, schema: Schema, stats: dict,
                     recipe: Recipe, augmentation: Augmentation | None) -> list:
    return list(split_parts(engine.chunks(), engine, offset, schema, stats, assignment, recipe, augmentation))


def connect(recipe: Recipe):
    """(client, the local cluster it started or None)."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise GenlabError("--engine dask needs Dask: pip install 'genlab[dask]'") from None
    if recipe.address:
        if not recipe.address.startswith(("tcp://", "tls://")):
            raise GenlabError(f"--address {recipe.address}: a Dask scheduler's address, like tcp://10.0.0.5:8786")
        try:
            return Client(recipe.address, timeout=10), None
        except (OSError, TimeoutError, ValueError) as e:
            raise GenlabError(f"--address {recipe.address}: no Dask scheduler answers ({e})") from None
    cluster = LocalCluster(n_workers=recipe.workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=logging.ERROR)
    return Client(cluster), cluster


class DaskPasses:
    """The three passes, partition by partition on a Dask cluster's workers."""

    name = "dask"

    def __init__(self, inp, recipe: Recipe):  # inp: pipeline.Input
        self.inp = inp
        self.client, self.cluster = connect(recipe)
        workers = max(1, len(self.client.scheduler_info()["workers"]))
        count = max(2 * workers, math.ceil(inp.path.stat().st_size / PARTITION_BYTES))
        header, spans = partitions(self.client, inp.path, inp.format.name, count)
        self.engines = [PartitionEngine(inp.path, inp.format.name, inp.chunk_rows, header, span) for span in spans]
        self.offsets: list[int] = []

    def _run(self, desc: str, function, *iterables, **shared) -> Iterator:
        """`function` over the partitions, on the workers; the results in partition order."""
        futures = self.client.map(function, *iterables, **shared, pure=False)
        with progress_bar(total=len(futures), unit="part", desc=desc, enabled=self.inp.progress) as bar:
            for future in futures:
                yield future.result()
                future.release()
                bar.update(1)

    def scan(self, recipe: Recipe) -> Scan:
        if self.inp.format.name == "csv":
            check_header(self.inp.path)  # a header pandas would read otherwise: the pandas engine takes over
        found = new_scan(self.inp.format, recipe)
        for part in self._run("scan", _scan_partition, self.engines, fmt=self.inp.format, path=self.inp.path,
                              recipe=recipe):
            self.offsets.append(found.rows)
            found.extend(part, found.rows)
        return found

    def _slices(self, assignment: np.ndarray) -> list[np.ndarray]:
        ends = self.offsets[1:] + [len(assignment)]
        return [assignment[a:b] for a, b in zip(self.offsets, ends)]

    def fit(self, schema: Schema, assignment: np.ndarray, recipe: Recipe) -> TrainStats:
        fitter = train_stats(recipe, schema)
        for part in self._run("fit", _fit_partition, self.engines, self._slices(assignment), schema=schema,
                              recipe=recipe):
            fitter.merge(part)
        return fitter

    def parts(self, schema: Schema, stats: dict, assignment: np.ndarray, recipe: Recipe,
              augmentation: Augmentation | None) -> Iterator[tuple[str, pd.DataFrame, np.ndarray, np.ndarray]]:
        for records in self._run("write", _split_partition, self.engines, self.offsets, self._slices(assignment),
                                 schema=schema, stats=stats, recipe=recipe, augmentation=augmentation):
            yield from records

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
