"""Near-duplicate texts (`--dedupe-near THRESHOLD`): MinHash signatures, LSH bands, checked pairs.

A text's shingles are the 3-word windows of its normalized form (`clean.dedupe_key`: NFKC, casefolded, no
punctuation, single spaces; a text of one or two words is one shingle). Its signature is the minimum of
each of PERMUTATIONS hash functions over its shingles, 4 bytes each; two signatures agree in each place
with probability the texts' Jaccard similarity (Broder 1997). Signatures are cut into b bands of r
places, b and r chosen for the threshold as Leskovec, Rajaraman and Ullman describe (the S-curve's false
positives and negatives, a miss weighted nine times a false candidate, since candidates are checked);
texts sharing a band and sorted near each other are candidates, and a candidate pair whose signatures
agree in at least THRESHOLD of their places is a near duplicate. The later text of such a
pair goes when the earlier one stays, in input order, so the result does not depend on chunks or
partitions: signatures are made where the text is read (a chunk, a Dask worker) and matched in one place.

Memory: PERMUTATIONS * 4 bytes (512) per record while deduplicating. With 128 permutations the estimate of a
Jaccard similarity J has a standard error of sqrt(J(1-J)/128), 0.03 at J = 0.8.
"""

from __future__ import annotations

import functools

import numpy as np
import polars as pl
import polars_hash as plh

from genlab.prep.clean import dedupe_key
from genlab.prep.dedupe import first_occurrences, splitmix64

PERMUTATIONS = 128
SHINGLE_WORDS = 3
WINDOW = 8  # in a band, each text is checked against this many neighbours (see near_duplicates)
SORT_PLACES = 8  # signature places after a band that order the texts sharing it
NO_SHINGLES = np.iinfo(np.uint32).max  # the signature of a text without words: never a near duplicate


@functools.cache
def _hash_family() -> tuple[np.ndarray, np.ndarray]:
    """PERMUTATIONS multiply-shift hash functions (odd multipliers), fixed for every run."""
    seeds = splitmix64(np.arange(1, 2 * PERMUTATIONS + 1, dtype=np.uint64))
    return seeds[:PERMUTATIONS] | np.uint64(1), seeds[PERMUTATIONS:]


def signatures(texts: list[str | None]) -> np.ndarray:
    """(n, PERMUTATIONS) uint32 MinHash signatures of the texts (NO_SHINGLES everywhere for one without words)."""
    keys = pl.Series("t", [dedupe_key(t or "") for t in texts], dtype=pl.String)
    words = keys.str.split(" ")
    counts = words.list.len().to_numpy().astype(np.int64)
    counts[(keys == "").to_numpy()] = 0
    out = np.full((len(texts), PERMUTATIONS), NO_SHINGLES, np.uint32)
    if not counts.any():
        return out
    flat = words.filter(pl.Series(counts > 0)).explode().rename("w").to_frame()
    hashes = flat.select(plh.col("w").nchash.xxh3_64()).to_series().to_numpy().astype(np.uint64)
    has = np.flatnonzero(counts)
    length = counts[has]
    starts = np.cumsum(length) - length
    # Shingle i of a text covers words i .. i+2 (or all of a shorter text).
    shingles = np.maximum(length - SHINGLE_WORDS + 1, 1)
    owner = np.repeat(np.arange(len(has)), shingles)
    first = starts[owner] + (np.arange(int(shingles.sum())) - np.repeat(np.cumsum(shingles) - shingles, shingles))
    last = np.minimum(first + SHINGLE_WORDS, starts[owner] + length[owner])
    mixed = np.zeros(len(first), np.uint64)
    for k in range(SHINGLE_WORDS):
        at = first + k
        mixed = splitmix64(mixed ^ np.where(at < last, hashes[np.minimum(at, len(hashes) - 1)], np.uint64(k + 1)))
    bounds = np.cumsum(shingles) - shingles
    multipliers, offsets = _hash_family()
    with np.errstate(over="ignore"):
        for k in range(PERMUTATIONS):
            values = ((mixed * multipliers[k] + offsets[k]) >> np.uint64(32)).astype(np.uint32)
            out[has, k] = np.minimum.reduceat(values, bounds)
    return out


@functools.cache
def bands(threshold: float) -> tuple[int, int]:
    """(bands, rows per band), b * r <= PERMUTATIONS, minimizing the S-curve's area of false candidates below
    the threshold plus nine times its area of missed pairs above it: candidates are checked, so a miss
    costs more than a check."""
    s = np.linspace(0, 1, 1001)
    best = None
    for b in range(1, PERMUTATIONS + 1):
        for r in range(1, PERMUTATIONS // b + 1):
            candidate = 1 - (1 - s**r) ** b
            error = np.trapezoid(np.where(s < threshold, 0.1 * candidate, 0.9 * (1 - candidate)), s)
            if best is None or error < best[0]:
                best = (error, b, r)
    return best[1], best[2]


def near_duplicates(signature: np.ndarray, threshold: float) -> np.ndarray:
    """(n, PERMUTATIONS) signatures in input order -> (n,) bool: True for a near duplicate of an earlier text
    that is itself kept.

    Candidates: in each band, texts sorted by the band (then by the signature places after it, so that
    texts agreeing in more places sit closer), each against its next WINDOW texts of the same band: a
    sorted neighbourhood, so that a band many texts share costs n * WINDOW checks, not n squared.
    """
    n = len(signature)
    b, r = bands(threshold)
    words = signature[:, 0] != NO_SHINGLES
    pairs = []
    for band in range(b):
        key = np.zeros(n, np.uint64)
        for column in range(band * r, (band + 1) * r):
            key = splitmix64(key ^ signature[:, column].astype(np.uint64))
        key[~words] = np.arange(int((~words).sum()), dtype=np.uint64)  # no band shared: never a candidate
        after = [signature[:, ((band + 1) * r + k) % PERMUTATIONS] for k in range(SORT_PLACES)]
        order = np.lexsort((*reversed(after), key))
        for step in range(1, WINDOW + 1):
            first, second = order[:-step], order[step:]
            same = key[first] == key[second]
            pairs.append(np.stack([np.minimum(first, second)[same], np.maximum(first, second)[same]], axis=1))
    pairs = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
    pairs = pairs[first_occurrences(pairs.astype(np.uint64))]  # each pair once, whichever band found it
    similar = (signature[pairs[:, 0]] == signature[pairs[:, 1]]).mean(axis=1) >= threshold
    pairs = pairs[similar]
    dropped = np.zeros(n, bool)
    for earlier, later in pairs[np.argsort(pairs[:, 1], kind="stable")].tolist():
        if not dropped[earlier]:  # a text dropped itself does not make others duplicates
            dropped[later] = True
    return dropped
