"""Byte-level BPE trained with Hugging Face `tokenizers`.

Byte-level means every string is representable (no unknown token) and
decode(encode(x)) == x. The HF tokenizer's own JSON is kept whole inside
genlab's tokenizer.json, so the pipeline (pre-tokenizer, model, decoder)
loads exactly as trained.
"""

from __future__ import annotations

import json
import re
from typing import Iterable, Iterator

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers


LONGEST_WORD = 256  # characters of one run (of spaces, or of anything else) that BPE training sees as one word
_LONG_RUN = re.compile(r"\S{%d,}|\s{%d,}" % (LONGEST_WORD + 1, LONGEST_WORD + 1))


def bounded_words(documents: Iterable[str]) -> Iterator[str]:
    """The documents for BPE training, each run of more than LONGEST_WORD characters without a space (or of
    spaces only) given as pieces of that length (each a text of its own, so no pair is made up at the cuts).
    Every merge revisits every word holding its pair: one 4 MB word (a base64 blob, minified code, a line of
    every character) kept training busy for more than ten minutes, and 400,000 spaces more than two, deaf to
    SIGTERM inside the Rust trainer."""
    for text in documents:
        start = 0
        for run in _LONG_RUN.finditer(text):
            yield text[start:run.start()]
            yield from (text[i: min(i + LONGEST_WORD, run.end())] for i in range(run.start(), run.end(), LONGEST_WORD))
            start = run.end()
        yield text[start:]


class BPETokenizer:
    kind = "bpe"
    unit = "byte"

    def __init__(self, hf: Tokenizer):
        self.hf = hf

    @classmethod
    def pre_tokenizer(cls):
        return pre_tokenizers.ByteLevel(add_prefix_space=False)

    @classmethod
    def train(cls, documents: Iterable[str], config) -> "BPETokenizer":
        hf = Tokenizer(models.BPE())
        hf.pre_tokenizer = cls.pre_tokenizer()
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=config.vocab_size,
            min_frequency=config.min_frequency,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        hf.train_from_iterator(bounded_words(documents), trainer)
        return cls(hf)

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=False)

    def unit_lengths(self) -> np.ndarray:
        # Each byte-level token stands for a fixed byte string; its length is what bits-per-byte divides by.
        return np.array([len(b) for b in self.token_bytes()], dtype=np.int64)

    def token_bytes(self) -> list[bytes]:
        """The bytes each token id stands for (constrained decoding matches patterns against them)."""
        byte_of = {c: b for b, c in _byte_alphabet().items()}
        out = [b""] * self.vocab_size
        for token, i in self.hf.get_vocab().items():
            out[i] = bytes(byte_of[c] for c in token if c in byte_of)
        return out

    def to_json(self) -> dict:
        return {"genlab_tokenizer": self.kind, "hf": json.loads(self.hf.to_str())}

    @classmethod
    def from_json(cls, data: dict) -> "BPETokenizer":
        return cls(Tokenizer.from_str(json.dumps(data["hf"])))


def _byte_alphabet() -> dict[int, str]:
    """GPT-2's byte -> printable-character table that byte-level BPE tokens are spelled in."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table
