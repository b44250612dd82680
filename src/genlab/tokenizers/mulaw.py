"""Mu-law tokenizer: a waveform in [-1, 1] -> 2^bits integer levels, the way WaveNet reads audio.

    F(x) = sign(x) * ln(1 + mu |x|) / ln(1 + mu),   mu = 2^bits - 1   (ITU-T G.711's companding)

Quantizing F(x) rather than x spends the levels where speech and music
spend their time, near zero: 8 bits of mu-law sound about as good as 13
bits spread evenly. A token is one sample, so bits per token is bits per
sample; decoding is the exact inverse up to the quantization step.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from genlab.core.errors import GenlabError


class MuLawTokenizer:
    kind = "mulaw"
    unit = "sample"

    def __init__(self, bits: int = 8, sample_rate: int = 16000):
        if not 2 <= bits <= 16:
            raise GenlabError(f"data.audio.bits: {bits} is out of range (2..16)")
        self.bits, self.sample_rate = bits, sample_rate
        self.mu = float(2 ** bits - 1)

    @classmethod
    def train(cls, documents: Iterable, config=None) -> "MuLawTokenizer":
        """Nothing to learn: the levels are fixed by `bits` (config: data.audio)."""
        return cls(getattr(config, "bits", 8), getattr(config, "sample_rate", 16000))

    @property
    def vocab_size(self) -> int:
        return 2 ** self.bits

    @property
    def silence(self) -> int:
        """The id of a zero sample."""
        return int(self.encode(np.zeros(1, dtype=np.float32))[0])

    def encode(self, audio: np.ndarray) -> np.ndarray:
        """Samples (N,) in [-1, 1] (clipped) -> ids (N,) in [0, 2^bits)."""
        x = np.clip(np.asarray(audio, dtype=np.float64), -1.0, 1.0)
        y = np.sign(x) * np.log1p(self.mu * np.abs(x)) / np.log1p(self.mu)  # [-1, 1]
        return np.rint((y + 1) / 2 * self.mu).astype(np.int64)

    def decode(self, ids: Iterable[int]) -> np.ndarray:
        """ids -> samples (N,) float32 in [-1, 1]."""
        y = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.float64) / self.mu * 2 - 1
        return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(self.mu)) / self.mu).astype(np.float32)

    def unit_lengths(self) -> np.ndarray:
        return np.ones(self.vocab_size, dtype=np.int64)

    def to_json(self) -> dict:
        return {"genlab_tokenizer": self.kind, "bits": self.bits, "sample_rate": self.sample_rate}

    @classmethod
    def from_json(cls, data: dict) -> "MuLawTokenizer":
        return cls(int(data["bits"]), int(data["sample_rate"]))
