"""Train/val/test split: exact counts per ratio, seeded, optionally stratified, disjoint.

Each record gets a seeded rank key from its content hash; within each
stratum (one per value of the --stratify column, or one for all) records are
ordered by key and cut at the ratio boundaries. So:
- the counts are exact (largest remainder) in every stratum, not only on average;
- the same record always lands in the same split for a given seed, whatever
  the chunk size or the row order;
- identical records (when duplicates are kept) share a key, and a cut never
  falls between them: no record is in two splits.
Memory: 8 bytes of key, 4 of stratum and 8 of partitioned keys per record.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from genlab.core.errors import GenlabError
from genlab.prep.dedupe import splitmix64

SPLITS = ("train", "val", "test")


def parse_ratios(spec: str | Sequence[float]) -> tuple[float, float, float]:
    """"70/15/15" (or "90/10", or a sequence) -> train, val, test percentages summing to 100."""
    text = spec if isinstance(spec, str) else "/".join(str(part) for part in spec)
    try:
        parts = [float(part) for part in text.split("/")]
    except ValueError:
        raise GenlabError(f"--split {text}: expected numbers like 70/15/15") from None
    if not 1 <= len(parts) <= 3 or any(p < 0 for p in parts):
        raise GenlabError(f"--split {text}: expected one to three non-negative numbers like 70/15/15")
    if abs(sum(parts) - 100) > 1e-9:
        raise GenlabError(f"--split {text}: ratios sum to {sum(parts):g}, not 100")
    parts += [0.0] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def split_counts(n: int, ratios: Sequence[float]) -> list[int]:
    """n records shared by `ratios` (percent): floors, then the remainder to the largest fractions."""
    exact = [n * r / 100 for r in ratios]
    counts = [int(e) for e in exact]
    by_fraction = sorted(range(len(ratios)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_fraction[: n - sum(counts)]:
        counts[i] += 1
    return counts


def rank_keys(hashes: np.ndarray, seed: int, keep: np.ndarray | None = None, block: int = 1 << 20) -> np.ndarray:
    """(n, 2) uint64 record hashes -> uint64 keys of the rows `keep` marks (all by default), a fresh order for
    every seed. Made a block at a time, so that the mixing's temporaries stay small: 8 bytes per key."""
    salt = splitmix64(np.array([seed & (2**64 - 1)], np.uint64))[0]
    keep = np.ones(len(hashes), bool) if keep is None else keep
    keys = np.empty(int(keep.sum()), np.uint64)
    done = 0
    for start in range(0, len(hashes), block):
        rows = hashes[start : start + block][keep[start : start + block]]
        part = splitmix64(rows[:, 1] ^ salt)
        part ^= rows[:, 0]
        keys[done : done + len(part)] = splitmix64(part)
        done += len(part)
    return keys


def assign_splits(keys: np.ndarray, strata: np.ndarray, ratios: Sequence[float], block: int = 1 << 20) -> np.ndarray:
    """(n,) uint64 keys and (n,) non-negative int strata -> (n,) uint8: 0 train, 1 val, 2 test.

    In each stratum the records with the n_train smallest keys go to train and the next n_val to val, a cut
    moving up past records that share the key before it (identical records). So only two order statistics
    per stratum are needed, not a sort: `np.partition` finds them in linear time. `keys` is overwritten (it
    becomes the sort value); memory: 8 bytes per record for the partitioned copy.
    """
    # One sort value per record: the stratum in the top bits, the key's top bits below it, so that each
    # stratum's records are one run of the partitioned order.
    bits = int(strata.max()).bit_length() if len(strata) else 0
    if bits:
        keys >>= np.uint64(bits)
        top = strata.astype(np.uint64)
        top <<= np.uint64(64 - bits)
        keys |= top
        del top
    counts = np.bincount(strata, minlength=1) if len(strata) else np.zeros(1, np.int64)
    starts = np.cumsum(counts) - counts
    plan = np.array([split_counts(int(n), ratios)[:2] for n in counts], np.int64).reshape(-1, 2)
    train_last = starts + plan[:, 0] - 1  # the position, in sorted order, of each stratum's last train record
    val_last = starts + plan[:, 0] + plan[:, 1] - 1
    has_train, has_val_cut = plan[:, 0] > 0, plan.sum(axis=1) > 0
    wanted = np.unique(np.concatenate([train_last[has_train], val_last[has_val_cut]]))
    ordered = np.partition(keys, wanted) if wanted.size else keys
    top_train = np.where(has_train, ordered[np.maximum(train_last, 0)], 0)
    # A train cut moved past ties may pass the val cut: val is then empty (its top is train's).
    top_val = np.where(has_val_cut, ordered[np.maximum(val_last, 0)], 0)
    top_val = np.where(has_train, np.maximum(top_val, top_train), top_val)
    del ordered
    assignment = np.full(len(keys), 2, np.uint8)
    for at in range(0, len(keys), block):  # a block at a time: the per-record thresholds stay small
        part, group = keys[at : at + block], strata[at : at + block]
        out = assignment[at : at + block]
        out[has_val_cut[group] & (part <= top_val[group])] = 1
        out[has_train[group] & (part <= top_train[group])] = 0
    return assignment
