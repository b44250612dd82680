"""Word-level tokenizer: NLTK's Treebank word tokenizer (rules only, no data to download) and a vocabulary of
the words seen at least `tokenizer.min_frequency` times, the `tokenizer.vocab_size` most frequent.

Each token is a piece of the original text, so decoding is concatenation and round-trips exactly:

    "Hello, world!\\n"  ->  ["Hello", ",", " world", "!", "\\n"]

A word keeps the single space before it (" world" and "world" are two tokens, as in GPT-2's byte-level BPE);
any other run of whitespace (line breaks, several spaces) is a token of its own. Words outside the vocabulary
become "<unk>" (or " <unk>"), which is what decoding shows for them. The Treebank rules split punctuation and
contractions ("It's" -> "It", "'s"); their spans in the original text are used, not the rewritten tokens, so
quotes stay as they were written. `unit` is the character: bits per char count the characters a token
stands for (an unknown word counts as the five of "<unk>").
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Iterator

import numpy as np

from genlab.core.errors import GenlabError

UNKNOWN = "<unk>"
_SPACES = re.compile(r"\s+")


def pieces(text: str) -> Iterator[str]:
    """`text` as the pieces tokens are made of; "".join(pieces(text)) == text."""
    from nltk.tokenize import TreebankWordTokenizer

    tokenizer = TreebankWordTokenizer()
    for line in text.splitlines(keepends=True):
        at = 0
        for start, end in tokenizer.span_tokenize(line):
            gap = line[at:start]
            if gap == " ":
                yield " " + line[start:end]
            else:
                if gap:
                    yield gap
                yield line[start:end]
            at = end
        if at < len(line):
            yield line[at:]  # trailing whitespace, the line break included


class WordTokenizer:
    kind = "word"
    unit = "char"

    def __init__(self, words: list[str]):
        self.words = words  # id -> piece; 0 and 1 are the unknown word without and with its space
        self._index = {w: i for i, w in enumerate(words)}

    @classmethod
    def train(cls, documents: Iterable[str], config=None) -> "WordTokenizer":
        counts: Counter[str] = Counter()
        for text in documents:
            counts.update(pieces(text))
        if not counts:
            raise GenlabError("the corpus is empty: nothing to build a word vocabulary from")
        least = getattr(config, "min_frequency", 2)
        most = getattr(config, "vocab_size", 4096) - 3
        kept = [w for w, n in counts.most_common() if n >= least and not _SPACES.fullmatch(w)][:max(most, 0)]
        spaces = sorted(w for w in counts if _SPACES.fullmatch(w))  # whitespace is always kept: layout survives
        return cls([UNKNOWN, " " + UNKNOWN, *sorted(set(spaces) | {"\n"}), *kept])

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int]:
        ids = []
        for piece in pieces(text):
            i = self._index.get(piece)
            if i is None:
                i = 1 if piece.startswith(" ") else 0
                if _SPACES.fullmatch(piece):  # an unseen whitespace run: the line breaks and spaces it holds
                    i = self._index.get("\n" if "\n" in piece else " ", 0)
            ids.append(i)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.words[i] for i in ids)

    def token_bytes(self) -> list[bytes]:
        return [w.encode() for w in self.words]

    def unit_lengths(self) -> np.ndarray:
        return np.array([len(w) for w in self.words], dtype=np.int64)

    def to_json(self) -> dict:
        return {"genlab_tokenizer": self.kind, "words": self.words}

    @classmethod
    def from_json(cls, data: dict) -> "WordTokenizer":
        return cls(list(data["words"]))
