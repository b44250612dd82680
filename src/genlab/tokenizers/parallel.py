"""Tokenizing a corpus on several processes, with the result of one: documents' pieces are encoded by a pool of
worker processes, each holding the tokenizer read from the run's tokenizer.json, and come back in their order,
at most a few pieces per worker in flight (memory stays flat however large the corpus).

Worth it past a few megabytes: a worker takes about a second to start. `workers_for` picks the count.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from genlab.tokenizers import load_tokenizer

PARALLEL_FROM_BYTES = 8_000_000  # below this the workers' start costs more than they save
IN_FLIGHT_PER_WORKER = 4

_tokenizer = None  # each worker's own, read once


def _load(path: str) -> None:
    global _tokenizer
    _tokenizer = load_tokenizer(Path(path))


def _encode(text: str) -> np.ndarray:
    return np.asarray(_tokenizer.encode(text), dtype=np.uint32)


def workers_for(requested: int | None, corpus_bytes: int) -> int:
    """The processes to tokenize with: as many as asked, or (None) every core this process may use for a corpus
    past PARALLEL_FROM_BYTES, else one."""
    if requested is not None:
        return requested
    return len(os.sched_getaffinity(0)) if corpus_bytes >= PARALLEL_FROM_BYTES else 1


def encode_documents(tokenizer, tokenizer_path: Path, documents: Iterable[Iterable[str]],
                     workers: int) -> Iterator[Iterator]:
    """Each document's pieces as token ids, document by document and piece by piece in order, as
    `(tokenizer.encode(p) for p in doc) for doc in documents` gives them, on `workers` processes (1: here)."""
    if workers <= 1:
        yield from ((tokenizer.encode(p) for p in doc) for doc in documents)
        return
    tagged = ((i, piece) for i, doc in enumerate(documents) for piece in doc)
    for _, group in itertools.groupby(_in_order(tagged, tokenizer_path, workers), key=lambda item: item[0]):
        yield (ids for _, ids in group)


def _in_order(tagged: Iterator[tuple[int, str]], tokenizer_path: Path, workers: int) -> Iterator[tuple[int, np.ndarray]]:
    # spawn: a fork of a process that has started torch's threads can deadlock
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_load, initargs=(str(tokenizer_path),)) as pool:
        pending: deque = deque()
        for index, piece in tagged:
            pending.append((index, pool.submit(_encode, piece)))
            if len(pending) >= IN_FLIGHT_PER_WORKER * workers:
                index, future = pending.popleft()
                yield index, future.result()
        while pending:
            index, future = pending.popleft()
            yield index, future.result()
