"""Token store: a corpus tokenized once into memory-mapped files beside a JSON header.

    data/header.json   dtype, vocab size, token and unit counts per split, seed
    data/train.bin     flat token ids (uint16 when the vocabulary fits, else uint32)
    data/val.bin
    data/test.bin

Building streams: documents are encoded one at a time and appended to a flat
file; the split then copies whole chunks (seeded choice) into the split files.
Memory stays flat however large the corpus is, and training reads random
windows straight from the memory map.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from genlab.datasets.batches import SeededBatches
from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write_json
from genlab.core.folders import replacing
from genlab.core.runs import read_header

SPLITS = ("train", "val", "test")


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


class TokenStore:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.header = read_header(self.folder, "token store")
        self.dtype = np.dtype(self.header["dtype"])

    def split(self, name: str) -> np.ndarray:
        """The split's tokens as a read-only memory map (an empty array for an empty split)."""
        n = self.header["splits"][name]["tokens"]
        if n == 0:
            return np.zeros(0, dtype=self.dtype)
        return np.memmap(self.folder / f"{name}.bin", dtype=self.dtype, mode="r", shape=(n,))

    @classmethod
    def build(
        cls,
        dest: Path,
        encoded_documents: Iterable[Iterable[list[int] | np.ndarray]],
        vocab_size: int,
        unit_lengths: np.ndarray,
        val_fraction: float,
        test_fraction: float,
        chunk: int,
        seed: int,
        separator: list[int] | None = None,
        tail: bool = False,
    ) -> "TokenStore":
        """Write the store for `encoded_documents` into `dest`, atomically.

        Each document is an iterable of token-id pieces (a large file arrives piece by
        piece); documents are joined by `separator`. The split copies seeded random chunks, or with
        `tail` cuts the token sequence in order: train, then val, then test (val is the end of the corpus
        when there is no test split, as nanoGPT and char-rnn split).
        """
        # Long on purpose: one streaming pass (encode, split by chunks, write) whose state must not be split up.
        dtype = token_dtype(vocab_size)
        with replacing(dest, "token-store") as tmp:
            flat_path = tmp / "all.bin"
            n = 0
            n_docs = 0
            with open(flat_path, "wb") as f:
                for pieces in encoded_documents:
                    started = False
                    for ids in pieces:
                        ids = np.asarray(ids, dtype=dtype)
                        if ids.size == 0:
                            continue
                        if not started and n_docs and separator:
                            f.write(np.asarray(separator, dtype=dtype).tobytes())
                            n += len(separator)
                        f.write(ids.tobytes())
                        n += ids.size
                        started = True
                    n_docs += started
            if n < 2:
                raise GenlabError("the corpus is empty after tokenization: nothing to train on")
            # Plain reads, not a memory map: mapped pages would count against the process's memory.
            flat = open(flat_path, "rb")
            if tail:
                ranges, chunk = _tail_ranges(n, val_fraction, test_fraction), None
            else:
                # Enough chunks that even a small corpus gets a val split of the requested size.
                chunk = max(1, min(chunk, n // 50))
                owners = _assign_chunks(math.ceil(n / chunk), val_fraction, test_fraction, seed)
                ranges = [[(int(c) * chunk, chunk) for c in np.flatnonzero(owners == split_id)] for split_id in range(len(SPLITS))]
            lengths = np.asarray(unit_lengths, dtype=np.int64)
            splits = {}
            for name, pieces in zip(SPLITS, ranges):
                tokens = units = 0
                with open(tmp / f"{name}.bin", "wb") as out:
                    for start, count in pieces:
                        flat.seek(start * dtype.itemsize)
                        piece = np.fromfile(flat, dtype=dtype, count=count)
                        out.write(piece.tobytes())
                        tokens += piece.size
                        units += int(lengths[piece].sum())
                splits[name] = {"tokens": tokens, "units": units}
            flat.close()
            flat_path.unlink()
            atomic_write_json(
                tmp / "header.json",
                {"dtype": dtype.name, "vocab_size": vocab_size, "documents": n_docs, "chunk": chunk, "seed": seed,
                 "split": "tail" if tail else "random-chunks", "splits": splits},
            )
        return cls(dest)


def _tail_ranges(n: int, val_fraction: float, test_fraction: float) -> list[list[tuple[int, int]]]:
    """(start, count) of train, val and test cut in order; train is the first int(n * train share) tokens."""
    n_train = int(n * (1 - val_fraction - test_fraction))
    n_val = n - n_train if test_fraction == 0 else int(n * val_fraction)
    if n_train < 2 or (val_fraction > 0 and n_val < 2):
        raise GenlabError(f"the corpus is too small to split ({n} tokens for val+test fractions {val_fraction}+{test_fraction})")
    return [[(0, n_train)], [(n_train, n_val)], [(n_train + n_val, n - n_train - n_val)]]


def _assign_chunks(n_chunks: int, val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """Split id (0 train, 1 val, 2 test) of every chunk; seeded, and train never empty."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_chunks)
    n_val = math.ceil(val_fraction * n_chunks) if val_fraction > 0 else 0
    n_test = math.ceil(test_fraction * n_chunks) if test_fraction > 0 else 0
    if n_val + n_test >= n_chunks:
        raise GenlabError(f"the corpus is too small to split ({n_chunks} chunks for val+test fractions {val_fraction}+{test_fraction})")
    owners = np.zeros(n_chunks, dtype=np.int8)
    owners[order[:n_val]] = 1
    owners[order[n_val : n_val + n_test]] = 2
    return owners


class WindowSampler(SeededBatches):
    """Random (input, target) windows of `block_size` tokens from a token array.

    Draws from its own seeded generator, saved in each checkpoint (SeededBatches).
    """

    def __init__(self, tokens: np.ndarray, block_size: int, batch_size: int, seed: int):
        if len(tokens) < 2:
            raise GenlabError("the training split is too small (fewer than 2 tokens)")
        self.tokens = tokens
        self.block_size = min(block_size, len(tokens) - 1)
        self.batch_size = batch_size
        super().__init__(seed)

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        T = self.block_size
        starts = torch.randint(0, len(self.tokens) - T, (self.batch_size,), generator=self.generator).tolist()
        windows = np.stack([np.asarray(self.tokens[s : s + T + 1], dtype=np.int64) for s in starts])
        windows = torch.from_numpy(windows)
        return windows[:, :-1], windows[:, 1:]  # (B, T) inputs, (B, T) next-token targets


class StreamWindows(SeededBatches):
    """Consecutive windows for truncated backprop through time: row i of every batch continues row i of the last.

    As in char-rnn, the token array is cut into `batch_size` equal chunks, one stream each; every batch holds
    the next `block_size` tokens of every stream, from a seeded random start. A stream that reaches the end
    of its chunk starts it over, and its `reset` flag (a third tensor, (B,) bool) tells the objective to
    drop the state it carried. The positions are part of the checkpoint, so a resumed run sees the same batches.
    """

    def __init__(self, tokens: np.ndarray, block_size: int, batch_size: int, seed: int):
        span = (len(tokens) - 1) // batch_size  # tokens per stream (and one more for the last target)
        if span < block_size + 1:
            raise GenlabError(f"train.carry_state: the training split ({len(tokens)} tokens) is too small for "
                              f"{batch_size} streams of {block_size}-token windows; lower train.batch_size")
        self.tokens, self.block_size, self.batch_size = tokens, block_size, batch_size
        super().__init__(seed)
        self.chunk_starts = torch.arange(batch_size) * span
        self.chunk_ends = self.chunk_starts + span + 1  # one past the last token a window of this stream may read
        shift = int(torch.randint(0, span - block_size, (1,), generator=self.generator))
        self.positions = self.chunk_starts + shift
        self.fresh = torch.ones(batch_size, dtype=torch.bool)  # no state carried yet

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        T = self.block_size
        wrap = self.positions + T + 1 > self.chunk_ends
        self.positions = torch.where(wrap, self.chunk_starts, self.positions)
        reset = wrap | self.fresh
        self.fresh = torch.zeros_like(self.fresh)
        windows = torch.from_numpy(np.stack([np.asarray(self.tokens[s: s + T + 1], dtype=np.int64) for s in self.positions.tolist()]))
        self.positions = self.positions + T
        return windows[:, :-1], windows[:, 1:], reset  # (B, T) inputs, (B, T) targets, (B,) start from zeros

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**super().state_dict(), "positions": self.positions.clone(), "fresh": self.fresh.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        super().load_state_dict(state)
        self.positions, self.fresh = state["positions"].clone(), state["fresh"].clone()


def eval_windows(tokens: np.ndarray, block_size: int, batch_size: int, max_batches: int | None = None, context: int = 0):
    """Non-overlapping windows covering the split once, in order: (inputs, targets) batches.

    Every token after the first is predicted exactly once, so the mean loss is
    the loss over the whole split. With `context`, each window starts with up to
    that many earlier tokens as unscored history (a model with a fixed receptive
    field, such as WaveNet, then sees a full past at every scored position).
    """
    n = len(tokens)
    if n < 2:
        raise GenlabError("the evaluation split is too small (fewer than 2 tokens); raise data.val_fraction")
    starts = list(range(0, n - 1, block_size))
    batches = 0
    for i in range(0, len(starts), batch_size):
        if max_batches is not None and batches >= max_batches:
            return
        group = starts[i : i + batch_size]
        lengths = [min(block_size, n - 1 - s) for s in group]
        history = [min(context, s) for s in group]
        T = max(h + L for h, L in zip(history, lengths))
        x = np.zeros((len(group), T), dtype=np.int64)
        y = np.full((len(group), T), -1, dtype=np.int64)  # -1 = padding or history, ignored by the loss
        for row, (s, L, h) in enumerate(zip(group, lengths, history)):
            piece = np.asarray(tokens[s - h : s + L + 1], dtype=np.int64)
            x[row, : h + L] = piece[:-1]
            y[row, h : h + L] = piece[h + 1 :]
        batches += 1
        yield torch.from_numpy(x), torch.from_numpy(y)
