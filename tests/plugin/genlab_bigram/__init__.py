"""A bigram language model as a genlab family: the next token's logits from the current token alone, through
a small bottleneck (an embedding, then a linear layer back to the vocabulary).

What genlab asks of a sequence family (docs/architecture.md, "Sequence model protocol"):
    forward(idx (B, T)) -> logits (B, T, V)                         training and evaluation
    init_state(B) -> state; step(idx (B, T'), state) -> (logits, state)   sampling, one step at a time
    max_context: the most tokens it reads at once (None: any number)
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn

from genlab.core.config import ModelConfig
from genlab.core.families import Family


class BigramConfig(ModelConfig):
    name: Literal["bigram"] = "bigram"
    n_embd: int = 32  # the bottleneck between one token and the next
    block_size: int = 64  # training window length (a bigram reads one token; longer windows are more examples)


class Bigram(nn.Module):
    Config = BigramConfig

    def __init__(self, cfg: BigramConfig, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(vocab_size, cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, vocab_size)
        self.max_context = None  # it needs only the last token, so it can continue any length

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(idx))  # (B, T) -> (B, T, n_embd) -> (B, T, V)

    def init_state(self, batch_size: int):
        return None  # nothing to carry: the last token is all it reads

    def step(self, idx: torch.Tensor, state):
        return self.forward(idx), state


# Its spec: a sequence family (text, code and music runs train it) whose Linear layer torch quantizes to int8.
FAMILY = Family("bigram", Bigram, "sequence", exports=("int8-torch",))
