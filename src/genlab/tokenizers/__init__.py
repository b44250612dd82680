"""Tokenizers behind one protocol, saved as one artifact: `tokenizer.json`.

    encode(document) -> list[int]      decode(ids) -> document
    vocab_size: int                    save(path)
    unit: str                          what bits-per-unit counts ("char", "byte", "token")
    unit_lengths() -> np.ndarray       units each token id stands for, shape (vocab_size,)

Kinds are trained by `train_tokenizer(kind, documents, config)` and read back
by `load_tokenizer(path)`, which recognizes the kind from the file itself.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np

from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write_text, read_text_file

# kind -> "module:Class"; each class has `train(documents, config)` and `from_json(dict)`.
KINDS: dict[str, str] = {
    "char": "genlab.tokenizers.char:CharTokenizer",
    "bpe": "genlab.tokenizers.bpe:BPETokenizer",
    "code": "genlab.tokenizers.code:CodeTokenizer",
    "midi": "genlab.tokenizers.midi:MidiTokenizer",
    "word": "genlab.tokenizers.word:WordTokenizer",
    "mulaw": "genlab.tokenizers.mulaw:MuLawTokenizer",
    "hf": "genlab.tokenizers.hf:HFTokenizer",
}


class Tokenizer(Protocol):
    kind: str
    unit: str

    @property
    def vocab_size(self) -> int: ...

    def encode(self, document) -> list[int]: ...

    def decode(self, ids: Iterable[int]): ...

    def unit_lengths(self) -> np.ndarray: ...

    def to_json(self) -> dict: ...


def tokenizer_class(kind: str):
    if kind not in KINDS:
        raise GenlabError(f"tokenizer.kind: unknown kind {kind!r} (known: {', '.join(KINDS)})")
    module, cls = KINDS[kind].split(":")
    return getattr(importlib.import_module(module), cls)


def train_tokenizer(kind: str, documents: Iterable, config) -> Tokenizer:
    """Fit a tokenizer of `kind` on `documents` (an iterable; read once)."""
    return tokenizer_class(kind).train(documents, config)


def save_tokenizer(tokenizer: Tokenizer, path: Path) -> None:
    atomic_write_text(path, json.dumps(tokenizer.to_json(), ensure_ascii=False))


def load_tokenizer(path: Path) -> Tokenizer:
    path = Path(path)
    if not path.exists():
        raise GenlabError(f"{path}: no such tokenizer file")
    try:
        data = json.loads(read_text_file(path))
    except (json.JSONDecodeError, RecursionError) as e:  # RecursionError: nested thousands deep
        raise GenlabError(f"{path}: not a tokenizer file ({e})") from None
    kind = data.get("genlab_tokenizer")
    if kind is None:
        raise GenlabError(f"{path}: not a genlab tokenizer (no 'genlab_tokenizer' field)")
    return tokenizer_class(kind).from_json(data)
