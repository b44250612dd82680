"""Recurrent language models: the plain (Elman) RNN, LSTM (Hochreiter & Schmidhuber 1997) and GRU
(Cho et al. 2014).

    idx (B, T) -> embedding -> n_layer stacked RNN/LSTM/GRU -> linear head -> logits (B, T, V)

Recurrence is causal by construction. Sampling carries the hidden state
from step to step, so each new token costs one recurrence step however
long the text already is. A GRU has three gates to the LSTM's four, so at
equal width it has about 3/4 of the recurrent parameters; the plain RNN
(h_t = tanh(W x_t + U h_{t-1} + b)) has no gates, a quarter of the LSTM's,
and is the one whose gradients vanish over long spans: the baseline the
gated cells were made to beat.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn

from genlab.core.config import ModelConfig
from genlab.core.families import Family


class RNNConfig(ModelConfig):
    name: Literal["lstm", "gru", "rnn"] = "lstm"
    n_layer: int = 2
    n_embd: int = 256  # embedding width and hidden size
    block_size: int = 128  # length of the training windows (truncated backprop through time)
    dropout: float = 0.1  # between layers and before the head
    tie_weights: bool = True


class RNN(nn.Module):
    Config = RNNConfig

    def __init__(self, cfg: RNNConfig, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.max_context = None  # the state carries any length
        self.embed = nn.Embedding(vocab_size, cfg.n_embd)
        cell = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cfg.name]  # nn.RNN: tanh, the Elman network
        self.rnn = cell(cfg.n_embd, cfg.n_embd, num_layers=cfg.n_layer, batch_first=True,
                        dropout=cfg.dropout if cfg.n_layer > 1 else 0.0)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.n_embd, vocab_size)
        if cfg.tie_weights:
            self.head.weight = self.embed.weight

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, T: int | None = None) -> float:
        return 6 * self.num_params()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) -> logits (B, T, vocab_size), starting from a zero state."""
        logits, _ = self.step(idx, None)
        return logits

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) -> the top layer's outputs (B, T, n_embd), from a zero state."""
        return self.rnn(self.drop(self.embed(idx)))[0]

    def init_state(self, batch_size: int, device=None, dtype=None):
        return None  # torch's RNNs start from zeros when given no state

    def step(self, idx: torch.Tensor, state):
        """Feed idx (B, T') after `state` -> (logits (B, T', V), new state)."""
        x = self.drop(self.embed(idx))  # (B, T', C)
        y, state = self.rnn(x, state)
        return self.head(self.drop(y)), state


LSTM = Family("lstm", RNN, "sequence", exports=("onnx", "int8", "int8-torch"), abilities=frozenset({"carry_state", "embed"}))
GRU = Family("gru", RNN, "sequence", exports=("onnx", "int8", "int8-torch"), abilities=frozenset({"carry_state", "embed"}))
PLAIN_RNN = Family("rnn", RNN, "sequence", exports=("onnx", "int8", "int8-torch"), abilities=frozenset({"carry_state", "embed"}))
