"""A Hugging Face model's own tokenizer, kept inside a genlab run: what a student distilled from a local
Hugging Face causal LM (`genlab distill --teacher hf:PATH`) reads text with.

The folder's `tokenizer.json` (the `tokenizers` library's format, written by every "fast" tokenizer) is copied
into the run's tokenizer.json, so the run does not depend on the folder staying where it was. The vocabulary
is the model's (its embedding may have more rows than the tokenizer has tokens), so the student's logits line
up with the teacher's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np

from genlab.core.errors import GenlabError


class HFTokenizer:
    kind = "hf"
    unit = "token"

    def __init__(self, serialized: str, vocab: int):
        from tokenizers import Tokenizer

        self.serialized, self.vocab = serialized, vocab
        self.tk = Tokenizer.from_str(serialized)

    @classmethod
    def from_folder(cls, folder: Path | str) -> "HFTokenizer":
        folder = Path(folder)
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise GenlabError(f"hf:{folder}: no tokenizer.json (a student needs the model's fast tokenizer)")
        try:
            model_vocab = int(json.loads((folder / "config.json").read_text()).get("vocab_size", 0))
        except (OSError, ValueError):
            model_vocab = 0
        serialized = path.read_text(encoding="utf-8")
        return cls(serialized, model_vocab)

    @classmethod
    def train(cls, documents: Iterable, config=None) -> "HFTokenizer":
        raise GenlabError("tokenizer.kind: `hf` comes from a Hugging Face teacher (genlab distill --teacher hf:PATH)")

    @property
    def vocab_size(self) -> int:
        return max(self.tk.get_vocab_size(with_added_tokens=True), self.vocab)

    def encode(self, text: str) -> list[int]:
        return self.tk.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self.tk.decode(list(ids), skip_special_tokens=False)

    def unit_lengths(self) -> np.ndarray:
        return np.ones(self.vocab_size, dtype=np.int64)

    def to_json(self) -> dict:
        return {"genlab_tokenizer": self.kind, "tokenizer": self.serialized, "vocab": self.vocab}

    @classmethod
    def from_json(cls, data: dict) -> "HFTokenizer":
        return cls(data["tokenizer"], int(data.get("vocab", 0)))
