"""Causal FNet: token mixing by the Fourier transform instead of attention (Lee-Thorp et al. 2021),
made causal so that it can generate.

    idx (B, T) -> token embedding -> n_layer x Block -> LayerNorm -> logits (B, T, V)
    Block: x + Mixing(LN(x)), then x + MLP(LN(x))

Plain FNet mixes tokens with Re(FFT(x)) along the sequence: every output
position sums every input position, the future included, so it cannot be
trained to predict the next token. Two causal mixers are offered
(`model.mixing`):

- "fourier" (FourierMixing): FNet's own mixing, parameter-free, with the
  future masked. FNet computes Re(F_seq X F_hid), the real part of the 2-D
  DFT of the (T, C) block X; here the sequence DFT matrix keeps only its
  lower triangle (output t reads inputs s <= t), each row scaled by
  1/sqrt(t+1) and the hidden DFT by 1/sqrt(C) so outputs stay near unit size:

      y = (tril(cos) / sqrt(t+1)) X cos_hid - (tril(sin) / sqrt(t+1)) X sin_hid

  with cos[t, s] = cos(2 pi t s / block_size). It costs O(T^2 C + T C^2) as
  matrix products and has no weights at all.
- "learned" (LearnedConvMixing, the default): each channel c is convolved
  with a learned causal kernel h_c of length block_size, computed with the FFT.
  It learns what to mix, so it is closer to Hyena's long convolutions than to
  FNet; it is the stronger of the two:

    y[t, c] = sum_{k=0..t} h_c[k] * x[t - k, c]

computed with the FFT (convolution theorem): both signals are zero-padded to
2T so the circular convolution the FFT computes equals the linear one, and
output t only ever receives inputs at t-k, k >= 0 — causal by construction.
The mixing costs O(T log T) per channel against attention's O(T^2), and has
no query/key/value projections. The FFT is causal up to float rounding
(~1e-7 relative); for windows of at most 64 tokens, where it is also faster
on CPU, the same convolution runs as a lower-triangular (Toeplitz) product,
which is causal bit for bit. Kernels start as decaying random filters
(a spread of decay rates per channel: some look back a few tokens, others
the whole block) so early training sees both local and long context.

Sampling carries each layer's mixing inputs (B, block_size, C): a new token
costs O(T C) like a KV cache, instead of re-running the whole context. The
mixers compute only the new positions' rows from what is held (`new_rows`),
for the one-token step, a prompt and the ONNX export alike.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn as nn

from genlab.core.config import ModelConfig
from genlab.core.families import Family
from genlab.models.gpt import MLP


class FNetConfig(ModelConfig):
    name: Literal["fnet"] = "fnet"
    n_layer: int = 4
    n_embd: int = 128
    block_size: int = 128  # kernel length = longest context the model sees
    mixing: Literal["learned", "fourier"] = "learned"  # learned causal convolution, or FNet's parameter-free DFT
    dropout: float = 0.0
    bias: bool = False

    def label(self) -> str:
        """FNet's two mixers are different models, named for what they are."""
        return "fnet, Fourier mixing" if self.mixing == "fourier" else "fnet, learned causal conv"


def causal_fft_conv(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """x (B, T, C), kernel (C, K) with K >= T -> y (B, T, C), y[t] = sum_{k<=t} kernel[:, k] * x[t-k]."""
    T = x.size(1)
    n = 1 << (2 * T - 1).bit_length()  # >= 2T: no wrap-around, so the result is the linear (causal) convolution
    X = torch.fft.rfft(x.float(), n=n, dim=1)  # (B, n/2+1, C)
    H = torch.fft.rfft(kernel[:, :T].float(), n=n, dim=1).transpose(0, 1)  # (n/2+1, C)
    return torch.fft.irfft(X * H, n=n, dim=1)[:, :T].to(x.dtype)


def causal_toeplitz_conv(x: torch.Tensor, kernel: torch.Tensor, rows: int | None = None) -> torch.Tensor:
    """The same convolution as causal_fft_conv, as a product with the kernel's lower-triangular lag matrix; with
    `rows`, only the last `rows` outputs (B, rows, C) from every input of x (what a cache of held inputs asks)."""
    L = x.size(1)
    T = L if rows is None else rows
    lag = (L - T + torch.arange(T, device=x.device))[:, None] - torch.arange(L, device=x.device)[None, :]  # (T, L)
    weights = kernel[:, lag.clamp(min=0)] * (lag >= 0)  # zero where the input lies after the output
    return torch.einsum("cts,bsc->btc", weights.to(x.dtype), x)


TOEPLITZ_MAX = 64  # up to here the direct product is faster on CPU (fwd+bwd, B=32, C=128: 27 vs 49 ms at T=64, 110 vs 95 at T=128)


def causal_conv(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """x (B, T, C), kernel (C, K >= T) -> the causal convolution (B, T, C), by the cheaper route for T."""
    return causal_toeplitz_conv(x, kernel) if x.size(1) <= TOEPLITZ_MAX else causal_fft_conv(x, kernel)


class HeldInputs:
    """Each layer's mixing inputs so far in preallocated buffers (B, block_size, C), every row at the same place:
    the T new positions are written after the `start` held ones."""

    def __init__(self, layers: list[torch.Tensor], start: int):
        self.layers, self.start = layers, start

    def remember(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) -> every input held, the new ones last (B, start+T, C)."""
        end = self.start + x.size(1)
        self.layers[layer][:, self.start: end] = x
        return self.layers[layer][:, :end]


class LearnedConvMixing(nn.Module):
    """Per-channel causal long convolution with a learned kernel (FFT for long windows)."""

    def __init__(self, cfg: FNetConfig):
        super().__init__()
        C, K = cfg.n_embd, cfg.block_size
        # Decay rates spread log-uniformly from "a few tokens" to "the whole block".
        rates = torch.logspace(math.log10(1.0 / 2), math.log10(1.0 / K), C)
        decay = torch.exp(-rates[:, None] * torch.arange(K)[None, :])  # (C, K)
        self.kernel = nn.Parameter(torch.randn(C, K) * decay / decay.sum(1, keepdim=True).sqrt())
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(causal_conv(x, self.kernel))

    def new_rows(self, held: torch.Tensor, T: int) -> torch.Tensor:
        """The mixing of the last T of the held inputs (B, L, C) -> (B, T, C): y[t] = sum_s kernel[:, t-s] * held[s],
        s <= t."""
        if T == 1:  # sampling's inner loop: the newest output alone, most recent input first (fewer calls)
            return torch.einsum("bsc,cs->bc", held.flip(1), self.kernel[:, : held.size(1)].to(held.dtype))[:, None]
        return causal_toeplitz_conv(held, self.kernel, T)


class FourierMixing(nn.Module):
    """FNet's parameter-free mixing, Re(2-D DFT), with the sequence DFT masked to be causal (module docstring)."""

    def __init__(self, cfg: FNetConfig):
        super().__init__()
        N, C = cfg.block_size, cfg.n_embd
        t, c = torch.arange(N, dtype=torch.float64), torch.arange(C, dtype=torch.float64)
        seq = 2 * math.pi * torch.outer(t, t) / N
        causal = torch.tril(torch.ones(N, N, dtype=torch.float64)) / (t + 1).sqrt()[:, None]
        hid = 2 * math.pi * torch.outer(c, c) / C
        # Buffers, not parameters, and not saved: they follow from block_size and n_embd.
        self.register_buffer("seq_cos", (seq.cos() * causal).float(), persistent=False)  # (N, N)
        self.register_buffer("seq_sin", (seq.sin() * causal).float(), persistent=False)
        self.register_buffer("hid_cos", (hid.cos() / math.sqrt(C)).float(), persistent=False)  # (C, C)
        self.register_buffer("hid_sin", (hid.sin() / math.sqrt(C)).float(), persistent=False)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.new_rows(x, x.size(1)))

    def new_rows(self, held: torch.Tensor, T: int) -> torch.Tensor:
        """The mixing of the last T of the held inputs (B, L, C) -> (B, T, C): the causal sequence DFT's rows of
        those positions, then the hidden DFT."""
        L = held.size(1)
        c, s = self.seq_cos[L - T: L, :L].to(held.dtype), self.seq_sin[L - T: L, :L].to(held.dtype)  # (T, L)
        return (c @ held) @ self.hid_cos.to(held.dtype) - (s @ held) @ self.hid_sin.to(held.dtype)


MIXERS = {"learned": LearnedConvMixing, "fourier": FourierMixing}


class Block(nn.Module):
    def __init__(self, cfg: FNetConfig, layer: int):
        super().__init__()
        self.layer = layer  # which of a cache's layers is this one's
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mix = MIXERS[cfg.mixing](cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cache=None) -> torch.Tensor:
        h = self.ln_1(x)
        # With a cache (sampling, ONNX) only the new positions are mixed, from every input held.
        x = x + (self.mix(h) if cache is None else self.mix.new_rows(cache.remember(self.layer, h), h.size(1)))
        return x + self.mlp(self.ln_2(x))


class FNet(nn.Module):
    Config = FNetConfig

    def __init__(self, cfg: FNetConfig, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.max_context = cfg.block_size
        self.wte = nn.Embedding(vocab_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg, i) for i in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying, as in GPT
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):  # residual branches, scaled as in GPT-2
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, T: int | None = None) -> float:
        """Training FLOPs per token: 6N for the matrices plus the FFT mixing (~3 FFTs of 2T points per channel, x3 for backward)."""
        T = T or self.cfg.block_size
        c = self.cfg
        if c.mixing == "fourier":  # per token and layer: two (C, C) products and on average T/2 inputs of two rows, x3 for backward
            return 6 * self.num_params() + 3 * c.n_layer * (2 * 2 * c.n_embd ** 2 + 2 * 2 * (T / 2) * c.n_embd)
        matrices = self.num_params() - c.n_layer * c.n_embd * c.block_size  # kernels are not multiply-added per token
        fft = 3 * 3 * 5 * c.n_embd * math.log2(2 * T) * c.n_layer  # ~5 n log2 n flops per FFT of n points, per token
        return 6 * matrices + fft

    def _trunk(self, idx: torch.Tensor, cache=None) -> torch.Tensor:
        x = self.drop(self.wte(idx))  # (B, T, C); the kernels encode position, so no position embedding
        for block in self.blocks:
            x = block(x, cache)
        return self.ln_f(x)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) token ids, T <= block_size -> logits (B, T, vocab_size)."""
        assert idx.size(1) <= self.cfg.block_size, f"context {idx.size(1)} exceeds block_size {self.cfg.block_size}"
        return self.lm_head(self._trunk(idx))

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) -> the last layer's states (B, T, n_embd), after the final LayerNorm."""
        return self._trunk(idx)

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict:
        """Per layer a (B, block_size, C) buffer of the mixing inputs seen so far."""
        shape = (batch_size, self.cfg.block_size, self.cfg.n_embd)
        return {"layers": [self.wte.weight.new_zeros(shape, dtype=dtype) for _ in self.blocks], "length": 0}

    def step(self, idx: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """Feed idx (B, T') after what `state` holds -> logits (B, T', V) for the new positions."""
        start = state["length"]
        assert start + idx.size(1) <= self.cfg.block_size, f"context {start + idx.size(1)} exceeds block_size {self.cfg.block_size}"
        x = self._trunk(idx, HeldInputs(state["layers"], start))
        state["length"] = start + idx.size(1)
        return self.lm_head(x), state


FAMILY = Family("fnet", FNet, "sequence", exports=("onnx", "int8", "int8-torch"), abilities=frozenset({"embed"}))
