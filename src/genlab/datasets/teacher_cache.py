"""A teacher's k largest logits for every token of a training split, computed once and read from disk.

    teacher_cache/header.json    teacher, k, block, windows, vocab
    teacher_cache/values.npy     (windows * block, k) float16, the logits, largest first (NumPy's format, no pickle)
    teacher_cache/indices.npy    (windows * block, k) int32, their token ids

A teacher's logits at a position depend on what it saw before in its window, so the cache is made over
fixed windows: window w covers tokens [w * block, (w + 1) * block), and `CachedWindows` trains on exactly
those windows, so every cached logit is the one the teacher gives there. A big teacher then runs once over
the split instead of at every step, and need not fit in memory beside the student.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write_json
from genlab.core.folders import replacing
from genlab.core.progress import progress_bar
from genlab.core.runs import read_header
from genlab.datasets.batches import SeededBatches
from genlab.sampling.endpoint import Endpoint

REMOTE_BATCH = 8  # windows scored per request of a remote teacher


def build_teacher_cache(dest: Path, teacher, tokens: np.ndarray, block: int, k: int, device, teacher_name: str,
                        batch_size: int = 16, progress: bool = True) -> None:
    windows = (len(tokens) - 1) // block
    if windows < 1:
        raise GenlabError(f"distill.cache_topk: the training split is shorter than one {block}-token window")
    k = min(k, teacher.vocab_size)
    with replacing(dest, "teacher-cache") as tmp:
        values = np.lib.format.open_memmap(tmp / "values.npy", mode="w+", dtype=np.float16, shape=(windows * block, k))
        indices = np.lib.format.open_memmap(tmp / "indices.npy", mode="w+", dtype=np.int32, shape=(windows * block, k))
        teacher.eval()
        with torch.no_grad():
            for first in progress_bar(range(0, windows, batch_size), desc="caching the teacher", unit="batch", enabled=progress):
                rows = range(first, min(first + batch_size, windows))
                x = torch.from_numpy(np.stack([np.asarray(tokens[w * block: (w + 1) * block], dtype=np.int64) for w in rows]))
                top = teacher(x.to(device)).float().topk(k, dim=-1)  # (b, block, k)
                span = slice(first * block, (first + len(rows)) * block)
                values[span] = top.values.reshape(-1, k).cpu().numpy().astype(np.float16)
                indices[span] = top.indices.reshape(-1, k).cpu().numpy().astype(np.int32)
        values.flush()
        indices.flush()
        atomic_write_json(tmp / "header.json", {"teacher": teacher_name, "k": k, "block": block, "windows": windows,
                                                "vocab": teacher.vocab_size})


def build_remote_teacher_cache(dest: Path, endpoint: Endpoint, tokens: np.ndarray, block: int, k: int, tokenizer,
                               progress: bool = True) -> None:
    """The same cache from a remote teacher's prompt logprobs (`remote:URL#MODEL`): window w's tokens and the one
    after it are scored as a prompt (`echo` with `logprobs`), and token j's alternatives become the soft targets
    of position j - 1, the one that predicts it. The teacher's tokens must be the student's (a character run
    served by genlab, say); the drawn token joins its alternatives, so k is at most the server's logprobs + 1,
    and slots a position lacks hold -inf (no probability)."""
    windows = (len(tokens) - 1) // block
    if windows < 1:
        raise GenlabError(f"distill.cache_topk: the training split is shorter than one {block}-token window")
    with replacing(dest, "teacher-cache") as tmp:
        values = np.lib.format.open_memmap(tmp / "values.npy", mode="w+", dtype=np.float16, shape=(windows * block, k))
        indices = np.lib.format.open_memmap(tmp / "indices.npy", mode="w+", dtype=np.int32, shape=(windows * block, k))
        values[:], indices[:] = -np.inf, 0
        for first in progress_bar(range(0, windows, REMOTE_BATCH), desc=f"scoring with the teacher {endpoint.name}",
                                  unit="batch", enabled=progress):
            rows = range(first, min(first + REMOTE_BATCH, windows))
            ids = [np.asarray(tokens[w * block: (w + 1) * block + 1]).tolist() for w in rows]
            for w, row_ids, scored in zip(rows, ids, endpoint.prompt_logprobs([tokenizer.decode(i) for i in ids], k - 1)):
                if [tokenizer.encode(t) for t in scored.tokens] != [[i] for i in row_ids]:
                    raise GenlabError(f"{endpoint.spec}: the teacher's tokens are not the student's, so its top_logprobs "
                                      "cannot be soft targets; --teacher-logprobs 0 distils from its samples alone")
                for j in range(1, len(row_ids)):
                    options = dict(scored.top_logprobs[j] or {})
                    options[scored.tokens[j]] = scored.token_logprobs[j]  # the drawn token, always among them
                    best = sorted(options.items(), key=lambda kv: -kv[1])[:k]
                    values[w * block + j - 1, : len(best)] = [v for _, v in best]
                    indices[w * block + j - 1, : len(best)] = [tokenizer.encode(t)[0] for t, _ in best]
        values.flush()
        indices.flush()
        atomic_write_json(tmp / "header.json", {"teacher": endpoint.spec, "k": k, "block": block, "windows": windows,
                                                "vocab": tokenizer.vocab_size})


class TeacherCache:
    def __init__(self, folder: Path):
        self.header = read_header(folder, "teacher cache")
        self.values = np.load(folder / "values.npy", mmap_mode="r")
        self.indices = np.load(folder / "indices.npy", mmap_mode="r")

    def matches(self, teacher: str, k: int, block: int) -> bool:
        h = self.header
        return h["teacher"] == teacher and h["k"] <= k and h["block"] == block


class CachedWindows(SeededBatches):
    """Random cached windows: (inputs (B, T), targets (B, T), teacher values (B, T, k), indices (B, T, k))."""

    def __init__(self, tokens: np.ndarray, cache: TeacherCache, batch_size: int, seed: int):
        self.tokens, self.cache, self.batch_size = tokens, cache, batch_size
        self.block_size = cache.header["block"]
        super().__init__(seed)

    def __next__(self):
        T = self.block_size
        rows = torch.randint(0, self.cache.header["windows"], (self.batch_size,), generator=self.generator).tolist()
        windows = torch.from_numpy(np.stack([np.asarray(self.tokens[w * T: w * T + T + 1], dtype=np.int64) for w in rows]))
        values = torch.from_numpy(np.stack([self.cache.values[w * T: (w + 1) * T] for w in rows]).astype(np.float32))
        indices = torch.from_numpy(np.stack([self.cache.indices[w * T: (w + 1) * T] for w in rows]).astype(np.int64))
        return windows[:, :-1], windows[:, 1:], values, indices
