"""GPT: a decoder-only, pre-norm transformer (Radford et al. 2019), written to be read.

    idx (B, T) -> token (+ learned position) embeddings -> n_layer x Block -> LayerNorm -> logits (B, T, V)
    Block: x + Attention(LN(x)), then x + MLP(LN(x))

Positions are either a learned table added to the input (GPT-2) or, with
`rope = true`, rotary embeddings (Su et al. 2021) applied to queries and
keys: relative positions, no table, and usually a lower loss at equal steps.

Attention is torch's scaled_dot_product_attention (a fused kernel where one
exists). Sampling goes through `step`, which keeps a preallocated key/value
cache per layer so each new token costs one position, not the whole context.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from pydantic import model_validator

from genlab.core.config import ModelConfig
from genlab.core.families import Family


class GPTConfig(ModelConfig):
    name: Literal["gpt"] = "gpt"
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 128  # longest context the model sees
    dropout: float = 0.0
    bias: bool = False  # bias in Linear and LayerNorm layers; off is slightly better and faster
    rope: bool = False  # rotary position embeddings instead of a learned position table

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "GPTConfig":
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if self.rope and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"rope needs an even head size (n_embd / n_head = {self.n_embd // self.n_head})")
        return self


def rope_tables(block_size: int, head_size: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The rotary angles pos * base^(-2i/head_size) as tables (block_size, head_size) laid out for `apply_rope`:
    [cos, cos] and [-sin, sin] over the (first half, second half) of a head."""
    inv_freq = base ** (-torch.arange(0, head_size, 2, dtype=torch.float32) / head_size)
    angles = torch.outer(torch.arange(block_size, dtype=torch.float32), inv_freq)
    return torch.cat([angles.cos(), angles.cos()], -1), torch.cat([-angles.sin(), angles.sin()], -1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each (first half, second half) pair of x's heads (..., hs) by its position's angle: (x1, x2) ->
    (x1 cos - x2 sin, x2 cos + x1 sin). cos, sin: rope_tables' rows, shaped to broadcast against x.
    Four calls, not seven: at a few thousand tokens a step, each elementwise pass costs."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([x2, x1], dim=-1) * sin


def _product(x: torch.Tensor, layer) -> torch.Tensor:
    """A linear layer of x (B, in) as GPT.token_weights holds it: (weight (in, out), bias), or a module."""
    if not isinstance(layer, tuple):
        return layer(x)
    weight, bias = layer
    return x @ weight if bias is None else torch.addmm(bias, x, weight)


class PrefixCache:
    """Keys and values in preallocated per-layer buffers (B, n_head, block_size, hs), every row at the same place:
    the T new positions start .. start+T-1 are written there and attention reads everything up to them."""

    def __init__(self, layers: list[dict], start: int, T: int, device=None):
        self.layers, self.start, self.end = layers, start, start + T
        self.causal = start == 0  # the new positions are the whole sequence: the plain causal mask
        # new position i (at start+i) sees keys up to there; a single new position sees them all
        self.mask = None if start == 0 or T == 1 else \
            torch.ones(T, start + T, dtype=torch.bool, device=device).tril(diagonal=start)

    def remember(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cache = self.layers[layer]
        cache["k"][:, :, self.start: self.end] = k
        cache["v"][:, :, self.start: self.end] = v
        return cache["k"][:, :, : self.end], cache["v"][:, :, : self.end]


class SlotCache:
    """The step engine's slots: one new position per row, rows at different places. positions (B,) in buffer rows
    `rows` (B,), sorted and distinct; each row sees its own keys up to its position."""

    causal = False

    def __init__(self, layers: list[dict], rows: torch.Tensor, positions: torch.Tensor):
        self.layers, self.positions = layers, positions
        self.length = int(positions.max()) + 1
        self.mask = (torch.arange(self.length, device=positions.device)[None, :] <= positions[:, None])[:, None, None, :]  # (B, 1, 1, L)
        first, B = int(rows[0]), rows.numel()
        packed = int(rows[-1]) - first == B - 1  # read as a view, not gathered
        self.write, self.read = rows, slice(first, first + B) if packed else rows

    def remember(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cache = self.layers[layer]
        cache["k"][self.write, :, self.positions] = k[:, :, 0]  # (B, nh, hs) into each row's place
        cache["v"][self.write, :, self.positions] = v[:, :, 0]
        return cache["k"][self.read, :, : self.length], cache["v"][self.read, :, : self.length]


def attend(qkv: torch.Tensor, B: int, T: int, n_head: int, rope: tuple | None = None, cache=None, layer: int = 0,
           dropout: float = 0.0) -> torch.Tensor:
    """Causal self-attention of T new positions per row, from their fused projection qkv (B, T, 3C) -> (B, T, C),
    before the output projection. Training, prefill, the one-token step and the ONNX export all attend here.

    Without a cache the T positions are the whole sequence. With one, their keys and values join those of the
    positions before them (`cache.remember`: written into a buffer, or concatenated) and the queries see what
    `cache.mask` (or `cache.causal`) allows. rope: cos, sin of the new positions, shaped to broadcast against
    (B, nh, T, hs)."""
    C = qkv.size(-1) // 3
    qkv = qkv.view(B, T, 3, n_head, C // n_head).permute(2, 0, 3, 1, 4)  # (3, B, nh, T, hs)
    if rope is not None:  # queries and keys in one rotation
        q, k = apply_rope(qkv[:2], *rope).unbind(0)
        v = qkv[2]
    else:
        q, k, v = qkv.unbind(0)
    if cache is None:
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
    else:
        k, v = cache.remember(layer, k, v)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=cache.mask, is_causal=cache.causal)
    return y.transpose(1, 2).reshape(B, T, C)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.n_head, self.layer = cfg.n_head, layer  # layer: which of a cache's layers is this one's
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, rope: tuple | None = None, cache=None) -> torch.Tensor:
        B, T, _ = x.shape
        y = attend(self.qkv(x), B, T, self.n_head, rope, cache, self.layer, self.dropout if self.training else 0.0)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg, layer)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, rope: tuple | None = None, cache=None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rope, cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    Config = GPTConfig

    def __init__(self, cfg: GPTConfig, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.max_context = cfg.block_size
        self.wte = nn.Embedding(vocab_size, cfg.n_embd)
        self.wpe = None if cfg.rope else nn.Embedding(cfg.block_size, cfg.n_embd)
        if cfg.rope:  # not saved: recomputed from the config
            cos, sin = rope_tables(cfg.block_size, cfg.n_embd // cfg.n_head)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg, i) for i in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, vocab_size, bias=False)
        # Weight tying: the input embedding doubles as the output projection (fewer
        # parameters, and rare tokens get gradient from both ends).
        self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        # GPT-2's scaled init: each residual branch adds to the stream n_layer*2 times.
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        """Parameters, position embeddings excluded (they do no multiply-adds per token)."""
        return sum(p.numel() for p in self.parameters()) - (self.wpe.weight.numel() if self.wpe is not None else 0)

    def flops_per_token(self, T: int | None = None) -> float:
        """Training FLOPs per token: 6N for the weights plus the attention scores (PaLM appendix B)."""
        T = T or self.cfg.block_size
        return 6 * self.num_params() + 12 * self.cfg.n_layer * self.cfg.n_embd * T

    def _trunk(self, idx: torch.Tensor, where, cache=None) -> torch.Tensor:
        """idx (B, T) at positions `where` (a slice shared by every row, or a tensor (B, T) of each row's own)
        -> the last layer's states (B, T, C) after the final LayerNorm."""
        if isinstance(where, slice):
            assert where.stop <= self.cfg.block_size, f"context {where.stop} exceeds block_size {self.cfg.block_size}"
        x = self.wte(idx)  # (B, T, C)
        rope = None
        if self.wpe is not None:
            x = x + self.wpe.weight[where]
        else:  # cos, sin: (T, hs), or (B, 1, T, hs) for rows at their own places
            rope = (self.rope_cos[where], self.rope_sin[where])
            if not isinstance(where, slice):
                rope = (rope[0][:, None], rope[1][:, None])
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, rope, cache)
        return self.ln_f(x)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) token ids -> logits (B, T, vocab_size)."""
        return self.lm_head(self._trunk(idx, slice(0, idx.size(1))))

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) -> the last layer's states (B, T, n_embd), after the final LayerNorm (what embeddings pool)."""
        return self._trunk(idx, slice(0, idx.size(1)))

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict:
        """An empty key/value cache: per layer (B, n_head, block_size, head_size) buffers; and what the
        one-token step reads (`token_weights`)."""
        c = self.cfg
        p = self.wte.weight
        shape = (batch_size, c.n_head, c.block_size, c.n_embd // c.n_head)
        layers = [{"k": p.new_zeros(shape, dtype=dtype), "v": p.new_zeros(shape, dtype=dtype)} for _ in range(c.n_layer)]
        return {"layers": layers, "length": 0, "weights": self.token_weights()}

    @torch.no_grad()
    def token_weights(self) -> dict:
        """What the one-token step reads, gathered once instead of through module attributes at every step:
        per block the two LayerNorms' (weight, bias) and the linear layers (qkv, proj, fc, proj); then the
        final LayerNorm and the head. A linear layer is held as (weight (in, out), contiguous; bias): a step
        multiplies a few rows by each weight, and at a few rows MKL's product with a weight stored (in, out)
        took half the time of nn.Linear's (out, in) (32 rows of 512 -> 128: 38 us against 79). A layer swapped
        for another kind (int8's dynamic quantization) is held as the module itself.

        The laid-out weights are one copy kept on the model, made again only when a weight has changed since
        (trained, loaded, moved: its storage or version counter differs), so every state shares it."""
        linears = [m for b in self.blocks for m in (b.attn.qkv, b.attn.proj, b.mlp.fc, b.mlp.proj)] + [self.lm_head]
        stamp = [(m.weight.data_ptr(), m.weight._version) if type(m) is nn.Linear else id(m) for m in linears]
        kept = self.__dict__.get("_token_weights")
        if kept is not None and kept[0] == stamp:
            return kept[1]
        laid = [(m.weight.t().contiguous(), m.bias) if type(m) is nn.Linear else m for m in linears]
        blocks = [((b.ln_1.weight, b.ln_1.bias), (b.ln_2.weight, b.ln_2.bias), *laid[4 * i: 4 * i + 4])
                  for i, b in enumerate(self.blocks)]
        weights = {"blocks": blocks, "ln_f": (self.ln_f.weight, self.ln_f.bias), "head": laid[-1]}
        self.__dict__["_token_weights"] = (stamp, weights)
        return weights

    def step(self, idx: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """Feed idx (B, T') after what `state` holds -> logits (B, T', V) for the new positions."""
        start, T = state["length"], idx.shape[1]
        cache = PrefixCache(state["layers"], start, T, idx.device)
        if not self.training:  # sampling: a prompt, then one token at a time
            assert start + T <= self.cfg.block_size, f"context {start + T} exceeds block_size {self.cfg.block_size}"
            logits = self._new_tokens(idx, start if T == 1 else slice(start, start + T), cache, state["weights"])
        else:
            logits = self.lm_head(self._trunk(idx, slice(start, start + T), cache))
        state["length"] = start + T
        return logits, state

    def _new_tokens(self, idx: torch.Tensor, where, cache, weights: dict) -> torch.Tensor:
        """New tokens in eval mode: idx (B, T) at `where` (an int or a slice shared by every row, or for T = 1 a
        tensor (B, 1) of each row's own position) -> logits (B, T, V). The arithmetic of `forward` (tests check
        token for token, within float rounding) written with torch.nn.functional over `token_weights`: at one
        token per row, or a short prompt, the cost is the number of calls, and module calls, dropouts and
        transposes were a fifth of it (through the modules, a 6-token prompt took 2.1 ms to the next token's 1.2)."""
        c = self.cfg
        (B, T), C, nh = idx.shape, c.n_embd, c.n_head
        x = F.embedding(idx.reshape(B * T), self.wte.weight)  # (B*T, C)
        rope = None
        if self.wpe is not None:  # one position (or T) for all rows, or one per row
            x = (x.view(B, T, C) + self.wpe.weight[where].reshape(-1, T, C)).view(B * T, C)
        else:  # cos, sin (1 or B, 1, T, hs)
            rope = tuple(t[where].reshape(-1, 1, T, t.size(-1)) for t in (self.rope_cos, self.rope_sin))
        for layer, (ln_1, ln_2, qkv, proj, fc, mlp_proj) in enumerate(weights["blocks"]):
            y = attend(_product(F.layer_norm(x, (C,), *ln_1), qkv), B, T, nh, rope, cache, layer)  # (B, T, C)
            x = x + _product(y.view(B * T, C), proj)
            h = F.layer_norm(x, (C,), *ln_2)
            x = x + _product(F.gelu(_product(h, fc)), mlp_proj)
        x = F.layer_norm(x, (C,), *weights["ln_f"])
        return _product(x, weights["head"]).view(B, T, -1)

    # ---- slots: rows at different positions in one batch (the step engine's continuous batching) ----

    def init_slots(self, capacity: int, dtype=None) -> dict:
        """A key/value cache of `capacity` independent rows (slots)."""
        return self.init_state(capacity, dtype=dtype)

    def fill_slot(self, slots: dict, slot: int, idx: torch.Tensor) -> torch.Tensor:
        """Prefill row `slot` with a prompt idx (1, T) from position 0 -> logits (1, T, V)."""
        logits, _ = self.step(idx, {"layers": self._rows(slots, slot), "length": 0, "weights": slots["weights"]})
        return logits

    def copy_slot(self, slots: dict, src: int, dst: int, length: int) -> None:
        """Row `dst` holds what row `src` holds for its first `length` positions (a shared prompt, prefilled once)."""
        for layer in slots["layers"]:
            layer["k"][dst, :, :length] = layer["k"][src, :, :length]
            layer["v"][dst, :, :length] = layer["v"][src, :, :length]

    def step_slots(self, slots: dict, rows: list[int], idx: torch.Tensor, positions: list[int]) -> torch.Tensor:
        """Feed one token per row: idx (B,) at positions (B,) into slot rows (B,), sorted and distinct -> logits (B, V)."""
        assert max(positions) < self.cfg.block_size, "a slot is full: recompute a sliding window instead"
        if len(rows) == 1:  # one row (a lone client): its own cache rows at a plain position, no mask to build
            cache = PrefixCache(self._rows(slots, rows[0]), positions[0], 1)
            return self._new_tokens(idx[:, None], positions[0], cache, slots["weights"])[:, 0]
        at = torch.tensor(positions, device=idx.device)
        return self._new_tokens(idx[:, None], at[:, None], SlotCache(slots["layers"], torch.tensor(rows, device=idx.device), at),
                                slots["weights"])[:, 0]

    @staticmethod
    def _rows(slots: dict, row: int) -> list[dict]:
        """Row `row` of every layer's buffers, as views (what is written there lands in the slot), made once a row:
        a lone client's every step reads them."""
        views = slots.setdefault("row_views", {})
        if row not in views:
            views[row] = [{"k": layer["k"][row: row + 1], "v": layer["v"][row: row + 1]} for layer in slots["layers"]]
        return views[row]


FAMILY = Family("gpt", GPT, "sequence", exports=("onnx", "int8", "int8-torch", "hf", "web"), abilities=frozenset({"embed"}))
