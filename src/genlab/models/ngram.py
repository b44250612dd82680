"""N-gram language model with interpolated Kneser-Ney smoothing (Chen & Goodman 1998): the
count-based baseline every neural model must beat.

    fit(train tokens) -> per order k = 1..n: counts of every k-gram seen
    forward(idx (B, T)) -> log P(next | last n-1 tokens) (B, T, V), used as logits

Interpolated Kneser-Ney, from the unigram up to order n:

    P_k(w | c) = max(N_k(c w) - D_k, 0) / N_k(c .)  +  D_k * types_k(c .) / N_k(c .) * P_{k-1}(w | c')

where c' drops c's oldest token, N_n is the raw count at the top order and,
below it, the *continuation* count (how many distinct tokens precede the
k-gram: "Francisco" is frequent but follows only "San"), D_k = n1/(n1+2 n2)
from the count-of-counts, and P_0 is uniform so an unseen token keeps some
mass. A context never seen falls back to P_{k-1} whole. Probabilities sum
to 1 at every position, so log P serves as logits for the loss and sampling.

Counts live in buffers (sorted int64 keys, a k-gram read as a base-V number),
so they are saved in model.safetensors like any weights. The state for
sampling is simply the last n-1 tokens.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn as nn

from genlab.core.config import ModelConfig
from genlab.core.errors import GenlabError
from genlab.core.families import Family


class NGramConfig(ModelConfig):
    name: Literal["ngram"] = "ngram"
    order: int = 5  # n: a prediction reads the last n-1 tokens
    block_size: int = 256  # window length for evaluation; any context works


def _windows(tokens: np.ndarray, k: int, V: int) -> np.ndarray:
    """Keys of every k-gram of `tokens` (len - k + 1,): t0 * V^(k-1) + ... + t_{k-1}."""
    keys = np.zeros(len(tokens) - k + 1, dtype=np.int64)
    for i in range(k):
        keys = keys * V + tokens[i : len(tokens) - k + 1 + i]
    return keys


def _discount(counts: np.ndarray) -> float:
    # Kept inside [0.1, 0.9]: a table without singletons would otherwise give D = 0 and zero probabilities.
    n1, n2 = int((counts == 1).sum()), int((counts == 2).sum())
    return min(max(n1 / (n1 + 2 * n2) if n1 + n2 > 0 else 0.5, 0.1), 0.9)


class NGram(nn.Module):
    Config = NGramConfig

    def __init__(self, cfg: NGramConfig, vocab_size: int):
        super().__init__()
        if cfg.order < 1:
            raise GenlabError("model.order: must be at least 1")
        if vocab_size ** cfg.order >= 2**63:
            raise GenlabError(f"model.order: {cfg.order}-grams of a {vocab_size}-token vocabulary do not fit 64-bit keys; lower the order")
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.max_context = None  # the state keeps the last n-1 tokens itself
        for k in range(1, cfg.order + 1):
            for name, dtype in (("keys", torch.int64), ("counts", torch.float32), ("ctx_keys", torch.int64),
                                ("ctx_total", torch.float32), ("ctx_types", torch.float32), ("discount", torch.float32)):
                self.register_buffer(f"{name}_{k}", torch.zeros(0, dtype=dtype))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The tables' sizes are known only after fitting: take the saved shapes.
        for name in self._buffers:
            if prefix + name in state_dict:
                self._buffers[name] = torch.empty_like(state_dict[prefix + name])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def num_params(self) -> int:
        """Stored counts: the n-gram model's equivalent of parameters."""
        return sum(getattr(self, f"keys_{k}").numel() for k in range(1, self.cfg.order + 1))

    def flops_per_token(self, T: int | None = None) -> float:
        return 0.0

    def fit(self, tokens: np.ndarray) -> None:
        """Count every k-gram (k <= n) of `tokens` (N,) and store the smoothing tables."""
        V, n = self.vocab_size, self.cfg.order
        tokens = np.asarray(tokens, dtype=np.int64)
        if len(tokens) < n:
            raise GenlabError(f"the training split has {len(tokens)} tokens, fewer than model.order={n}")
        keys, counts = np.unique(_windows(tokens, n, V), return_counts=True)
        for k in range(n, 0, -1):
            self._store(k, keys, counts.astype(np.float64))
            if k > 1:  # continuation counts of the (k-1)-grams: distinct tokens before each
                keys, counts = np.unique(keys % V ** (k - 1), return_counts=True)

    def _store(self, k: int, keys: np.ndarray, counts: np.ndarray) -> None:
        V = self.vocab_size
        ctx, first = np.unique(keys // V, return_index=True)
        total = np.add.reduceat(counts, first)
        types = np.diff(np.append(first, len(keys)))
        tables = {"keys": keys, "counts": counts, "ctx_keys": ctx, "ctx_total": total, "ctx_types": types,
                  "discount": np.array([_discount(counts)])}
        for name, value in tables.items():
            dtype = torch.int64 if "keys" in name else torch.float32
            setattr(self, f"{name}_{k}", torch.as_tensor(np.asarray(value), dtype=dtype))

    def _probs(self, idx: np.ndarray) -> np.ndarray:
        """idx (B, T) -> P(next token | the up to n-1 tokens ending at each position) (B, T, V)."""
        V, n = self.vocab_size, self.cfg.order
        B, T = idx.shape
        p = np.full((B, T, V), 1.0 / V)
        context = np.zeros((B, T), dtype=np.int64)  # key of the k-1 tokens ending at each position
        for k in range(1, n + 1):
            if k - 2 >= T:
                break  # no position has k-1 tokens of history
            if k > 1:  # extend the context by one older token; position t has t+1 tokens to draw on
                shift = np.zeros_like(idx)
                shift[:, k - 2 :] = idx[:, : T - k + 2]
                context = context + shift * V ** (k - 2)
            known = np.arange(T) >= k - 2  # (T,) positions with k-1 tokens of history
            keys = getattr(self, f"ctx_keys_{k}").numpy()
            if keys.size == 0 or not known.any():
                continue
            c = context[:, known].reshape(-1)
            slot = np.clip(np.searchsorted(keys, c), 0, len(keys) - 1)
            seen = keys[slot] == c
            total = np.where(seen, getattr(self, f"ctx_total_{k}").numpy()[slot], 0.0)
            types = np.where(seen, getattr(self, f"ctx_types_{k}").numpy()[slot], 0.0)
            counts = self._rows(k, c, seen)  # (P, V)
            D = float(getattr(self, f"discount_{k}")[0])
            lower = p[:, known].reshape(-1, V)
            safe = np.maximum(total, 1.0)[:, None]
            mixed = np.maximum(counts - D, 0.0) / safe + (D * types)[:, None] / safe * lower
            p[:, known] = np.where(seen[:, None], mixed, lower).reshape(B, -1, V)
        return p

    def _rows(self, k: int, contexts: np.ndarray, seen: np.ndarray) -> np.ndarray:
        """Dense counts (P, V) of every token after each context, gathered from the sorted k-gram keys."""
        V = self.vocab_size
        keys, counts = getattr(self, f"keys_{k}").numpy(), getattr(self, f"counts_{k}").numpy()
        lo = np.searchsorted(keys, contexts * V)
        hi = np.where(seen, np.searchsorted(keys, contexts * V + V), lo)
        lengths = hi - lo
        rows = np.repeat(np.arange(len(contexts)), lengths)
        at = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths) + np.repeat(lo, lengths)
        dense = np.zeros((len(contexts), V))
        dense[rows, keys[at] % V] = counts[at]
        return dense

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) -> log-probabilities (B, T, V), which serve as logits."""
        ids = idx.detach().cpu().numpy().astype(np.int64)
        rows = max(1, (1 << 22) // max(1, ids.shape[1] * self.vocab_size))  # bounds the dense (rows, T, V) tables
        logp = [np.log(self._probs(ids[i : i + rows])).astype(np.float32) for i in range(0, len(ids), rows)]
        return torch.from_numpy(np.concatenate(logp)).to(idx.device)

    def init_state(self, batch_size: int, device=None, dtype=None) -> torch.Tensor:
        return torch.zeros(batch_size, 0, dtype=torch.long, device=device)

    def step(self, idx: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Feed idx (B, T') after the held tokens -> (logits (B, T', V), the last n-1 tokens)."""
        history = torch.cat([state.to(idx.device), idx], dim=1)
        logits = self(history)[:, -idx.size(1) :]
        return logits, history[:, max(0, history.size(1) - (self.cfg.order - 1)) :]


FAMILY = Family("ngram", NGram, "sequence", abilities=frozenset({"fit"}))  # a count table: nothing to export or quantize
