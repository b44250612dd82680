"""Text diversity: distinct-n (Li et al. 2016), the share of unique word n-grams."""

from __future__ import annotations


def distinct_n(texts: list[str], n: int) -> float:
    """Unique n-grams of whitespace-separated words over all n-grams in `texts` (0 when there are none)."""
    grams = []
    for text in texts:
        words = text.split()
        grams.extend(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return len(set(grams)) / len(grams) if grams else 0.0
