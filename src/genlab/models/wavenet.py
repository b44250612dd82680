"""WaveNet (van den Oord et al. 2016): raw audio, one mu-law sample at a time.

    idx (B, T) -> embedding (B, R, T)
      -> stacks x layers of: dilated causal conv (kernel k, dilation 1, 2, 4, ... 2^(layers-1))
                             -> tanh(filter) * sigmoid(gate)  [+ a class embedding in both, when conditioned]
                             -> 1x1 conv -> (residual R added to the layer's input, skip S summed over layers)
      -> relu -> 1x1 conv S->S -> relu -> 1x1 conv S->V -> logits (B, T, V)

Every convolution looks only left (padding on the left by (k-1)*dilation),
so position t sees samples t-receptive_field+1 .. t and nothing later.

Generation (Fast WaveNet, Paine et al. 2016): a layer's output at time t
needs its input at t, t-d, ..., t-(k-1)d and nothing else, so each layer
keeps a ring buffer of its last (k-1)*d inputs. One new sample then costs
a few small matrix products per layer instead of a convolution over the
whole receptive field, and the state is exact at any length: `max_context` is
None, and `receptive_field` tells the step engine how far an uncached
(recomputed) step must look back to get the same logits.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.core.config import ModelConfig
from genlab.core.families import Family


class WaveNetConfig(ModelConfig):
    name: Literal["wavenet"] = "wavenet"
    layers_per_stack: int = 10  # dilations 1, 2, 4, ..., 2^(layers_per_stack-1) in each stack
    stacks: int = 2
    residual_channels: int = 64
    skip_channels: int = 128
    kernel_size: int = 2
    block_size: int = 4096  # samples per training window (every position is scored)
    num_classes: int | None = None  # global conditioning on a class (set from the data, e.g. one per subfolder)


class CausalLayer(nn.Module):
    """One gated residual layer: dilated causal conv -> tanh * sigmoid -> residual and skip outputs."""

    def __init__(self, cfg: WaveNetConfig, dilation: int):
        super().__init__()
        R, S = cfg.residual_channels, cfg.skip_channels
        self.dilation, self.kernel_size, self.skip_channels = dilation, cfg.kernel_size, S
        self.conv = nn.Conv1d(R, 2 * R, cfg.kernel_size, dilation=dilation)  # filter and gate halves
        self.cond = nn.Embedding(cfg.num_classes, 2 * R) if cfg.num_classes else None
        self.out = nn.Conv1d(R, R + S, 1)  # residual and skip halves

    @property
    def past(self) -> int:
        """How many earlier inputs one output reads: the length of this layer's ring buffer."""
        return (self.kernel_size - 1) * self.dilation

    def gate(self, z: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        if self.cond is not None and cond is not None:
            z = z + self.cond(cond).unsqueeze(-1)  # (B, 2R, 1): the same shift at every time step
        f, g = z.chunk(2, dim=1)
        return torch.tanh(f) * torch.sigmoid(g)

    def forward(self, h: torch.Tensor, cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """h (B, R, T) -> (next layer's input (B, R, T), skip (B, S, T))."""
        a = self.gate(self.conv(F.pad(h, (self.past, 0))), cond)
        residual, skip = self.out(a).split([h.size(1), self.skip_channels], dim=1)
        return h + residual, skip


class WaveNet(nn.Module):
    Config = WaveNetConfig

    def __init__(self, cfg: WaveNetConfig, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.num_classes = cfg.num_classes or 0
        self.embed = nn.Embedding(vocab_size, cfg.residual_channels)  # = a 1x1 conv over one-hot samples
        self.layers = nn.ModuleList(CausalLayer(cfg, 2 ** i) for _ in range(cfg.stacks) for i in range(cfg.layers_per_stack))
        self.post = nn.Conv1d(cfg.skip_channels, cfg.skip_channels, 1)
        self.head = nn.Conv1d(cfg.skip_channels, vocab_size, 1)
        self.max_context = None  # the ring buffers make the state exact at any length
        self.receptive_field = 1 + sum(layer.past for layer in self.layers)
        self.eval_context = self.receptive_field - 1  # evaluation gives each window this much history

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, T: int | None = None) -> float:
        return 6 * self.num_params()

    def forward(self, idx: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """idx (B, T) sample ids, cond (B,) class ids or None -> logits (B, T, V)."""
        return self._run(idx, cond)[0]

    def _run(self, idx: torch.Tensor, cond: torch.Tensor | None):
        h = self.embed(idx).transpose(1, 2)  # (B, R, T)
        inputs, skips = [], 0
        for layer in self.layers:
            inputs.append(h)
            h, skip = layer(h, cond)
            skips = skips + skip  # (B, S, T)
        logits = self.head(F.relu(self.post(F.relu(skips))))  # (B, V, T)
        return logits.transpose(1, 2), inputs

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) -> the summed skip connections (B, T, S): what the output head reads."""
        h, skips = self.embed(idx).transpose(1, 2), 0
        for layer in self.layers:
            h, skip = layer(h, None)
            skips = skips + skip
        return skips.transpose(1, 2)

    # ---- generation: one ring buffer per layer ------------------------------------------------------
    #
    # The state holds every layer's past inputs in one tensor, past (n_layers, B, R, longest buffer): layer i's
    # input at time s sits at past[i, :, :, s mod L_i] (L_i = (k-1) * dilation_i). A new sample then needs:
    # the taps of every layer from the past at once (one gather, one batched matmul), a short chain of two
    # small matmuls per layer for the part that depends on this very sample, and one scatter of the new
    # inputs. The skip outputs are linear in the gated activations, so they are summed by one matmul at the end.

    def init_state(self, batch_size: int, device=None, dtype=None, cond: torch.Tensor | None = None):
        longest = max(layer.past for layer in self.layers)
        return {"t": 0, "cond": cond, "fresh": True,
                "past": torch.zeros(len(self.layers), batch_size, self.cfg.residual_channels, longest, device=device, dtype=dtype)}

    def step(self, idx: torch.Tensor, state):
        """Feed idx (B, T') after `state` -> (logits (B, T', V), new state). A fresh state takes any number of
        samples in one convolution (the prime); after that, one sample per call is the fast path."""
        if state is None:
            state = self.init_state(idx.size(0), idx.device)
        if state["fresh"]:
            return self._prefill(idx, state)
        return torch.cat([self._step_one(idx[:, i], state) for i in range(idx.size(1))], dim=1), state

    def _prefill(self, idx: torch.Tensor, state):
        logits, inputs = self._run(idx, state["cond"])
        T = idx.size(1)
        for i, (layer, h) in enumerate(zip(self.layers, inputs)):
            L = layer.past
            recent = F.pad(h, (max(L - T, 0), 0))[:, :, -L:]  # inputs at times T-L .. T-1 (zeros before 0)
            state["past"][i, :, :, :L] = recent.roll(T % L, dims=2)  # time s lives at index s mod L
        state["t"], state["fresh"] = T, False
        state["fast"] = self._fast_weights(state["cond"], idx.device)
        return logits, state

    def _fast_weights(self, cond: torch.Tensor | None, device) -> dict:
        """The weights of the fast step, stacked by layer (taken when generation starts, so they are the
        weights of that moment)."""
        k, R = self.cfg.kernel_size, self.cfg.residual_channels
        conv = torch.stack([layer.conv.weight for layer in self.layers])  # (n, 2R, R, k)
        bias = torch.stack([layer.conv.bias for layer in self.layers])[:, None, :]  # (n, 1, 2R)
        if cond is not None and self.layers[0].cond is not None:
            bias = bias + torch.stack([layer.cond(cond) for layer in self.layers])  # (n, B, 2R)
        out = torch.stack([layer.out.weight[:, :, 0] for layer in self.layers])  # (n, R+S, R)
        out_bias = torch.stack([layer.out.bias for layer in self.layers])  # (n, R+S)
        return {
            "taps": conv[..., : k - 1],  # (n, 2R, R, k-1): weights of the inputs at t-(k-1)d .. t-d
            "bias": bias,
            # per layer, as lists: indexing a stacked tensor would cost a call per layer and sample
            "now": list(conv[..., k - 1].transpose(1, 2).contiguous()),  # n x (R, 2R): weights of the input at t
            "residual": list(out[:, :R].transpose(1, 2).contiguous()), "residual_bias": list(out_bias[:, :R]),  # n x (R, R), (R,)
            "skip": out[:, R:].transpose(1, 2).reshape(-1, self.cfg.skip_channels),  # (n*R, S)
            "skip_bias": out_bias[:, R:].sum(0),  # (S,)
            "layer": torch.arange(len(self.layers), device=device),
            "dilation": torch.tensor([layer.dilation for layer in self.layers], device=device),
            "length": torch.tensor([layer.past for layer in self.layers], device=device),
        }

    def _step_one(self, x: torch.Tensor, state) -> torch.Tensor:
        """x (B,) the newest sample ids -> logits (B, 1, V); every ring buffer advances by one."""
        t, k, w, past = state["t"], self.cfg.kernel_size, state["fast"], state["past"]
        layer, length = w["layer"], w["length"]
        taps = torch.stack([past[layer, :, :, (t - j * w["dilation"]) % length] for j in range(k - 1, 0, -1)], -1)  # (n, B, R, k-1)
        from_past = torch.einsum("nbrj,norj->nbo", taps, w["taps"]) + w["bias"]  # (n, B, 2R)
        h = self.embed(x)  # (B, R)
        inputs, gated = [], []
        for z_past, now, residual, residual_bias in zip(from_past.unbind(0), w["now"], w["residual"], w["residual_bias"]):
            inputs.append(h)
            f, g = torch.addmm(z_past, h, now).chunk(2, dim=1)  # (B, R) each
            a = torch.tanh(f) * torch.sigmoid(g)
            gated.append(a)
            h = torch.addmm(h + residual_bias, a, residual)
        past[layer, :, :, t % length] = torch.stack(inputs)  # (n, B, R), after the taps were read
        skips = torch.addmm(w["skip_bias"], torch.cat(gated, dim=1), w["skip"])  # (B, S)
        out = F.linear(F.relu(skips), self.post.weight[:, :, 0], self.post.bias)
        logits = F.linear(F.relu(out), self.head.weight[:, :, 0], self.head.bias)
        state["t"] = t + 1
        return logits.unsqueeze(1)


class Conditioned(nn.Module):
    """A conditioned WaveNet seen as a plain sequence model: every forward and step uses one class per row,
    so the step engine (which knows nothing of classes) can sample from it."""

    def __init__(self, model: WaveNet, cond: torch.Tensor):
        super().__init__()
        self.model, self.cond = model, cond  # cond (B,) class ids, or (1,) for every row
        self.vocab_size, self.max_context = model.vocab_size, model.max_context
        self.receptive_field, self.eval_context = model.receptive_field, model.eval_context

    def _rows(self, batch: int) -> torch.Tensor:
        return self.cond.expand(batch) if self.cond.numel() == 1 else self.cond

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(idx, self._rows(idx.size(0)))

    def init_state(self, batch_size: int, device=None, dtype=None):
        return self.model.init_state(batch_size, device, dtype, self._rows(batch_size))

    def step(self, idx: torch.Tensor, state):
        return self.model.step(idx, state if state is not None else self.init_state(idx.size(0), idx.device))


FAMILY = Family("wavenet", WaveNet, "audio", abilities=frozenset({"embed"}))
