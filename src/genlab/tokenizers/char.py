"""Character-level tokenizer: one id per Unicode code point seen in training."""

from __future__ import annotations

from typing import Iterable

import numpy as np

from genlab.core.errors import GenlabError

# Each character is a row of the embedding and a column of every logit: a 4 MB file of every Unicode character
# (1.1 M of them) asked for 18 GB of logits per batch, and the machine's whole memory. Chinese and Japanese
# text holds 10-20 thousand.
MAX_CHARS = 32_768


class CharTokenizer:
    kind = "char"
    unit = "char"

    def __init__(self, chars: str):
        self.chars = chars
        # Sorted code points let encode map a whole text with one searchsorted.
        self._points = np.array([ord(c) for c in chars], dtype=np.uint32)
        self._index = {c: i for i, c in enumerate(chars)}

    @classmethod
    def train(cls, documents: Iterable[str], config=None) -> "CharTokenizer":
        seen: set[str] = set()
        for text in documents:
            seen.update(text)
        if not seen:
            raise GenlabError("the corpus is empty: nothing to build a character vocabulary from")
        if len(seen) > MAX_CHARS:
            raise GenlabError(f"the corpus holds {len(seen):,} distinct characters; a char tokenizer takes at most "
                              f"{MAX_CHARS:,} (use --tokenizer bpe, whose vocabulary has a size)")
        # Always "\n": it separates documents and starts a sample with no prompt, even for a corpus
        # written on a single line.
        return cls("".join(sorted(seen | {"\n"})))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def token_bytes(self) -> list[bytes]:
        """The bytes each token id stands for: its character as UTF-8."""
        return [c.encode() for c in self.chars]

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def encode_array(self, text: str) -> np.ndarray:
        points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        ids = np.searchsorted(self._points, points)
        ids = np.minimum(ids, len(self._points) - 1)
        bad = self._points[ids] != points
        if bad.any():
            c = chr(int(points[bad.argmax()]))
            raise GenlabError(f"character {c!r} is not in this model's vocabulary (it never occurred in training)")
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def unit_lengths(self) -> np.ndarray:
        return np.ones(self.vocab_size, dtype=np.int64)

    def to_json(self) -> dict:
        return {"genlab_tokenizer": self.kind, "chars": self.chars}

    @classmethod
    def from_json(cls, data: dict) -> "CharTokenizer":
        return cls(data["chars"])
