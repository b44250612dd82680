"""A small U-Net for diffusion (Ho et al. 2020): predicts noise (or velocity) from a noisy image and its timestep.

    x (B, C, H, W), t (B,) int, y (B,) class or the null class
    emb    = MLP(sinusoid(t)) [+ class embedding]                       (B, 4*ch)
    h      = conv_in(x)                                                 (B, ch, H, W)
    down   : per level i: n_res x ResBlock(emb) [+ attention at the lowest level], skip, downsample (but the last)
    middle : ResBlock, attention, ResBlock
    up     : per level, lowest first: concat skip, n_res x ResBlock [+ attention], upsample (but the top)
    out    = conv_out(SiLU(GroupNorm(h)))                               (B, C, H, W), zero-initialized

The network knows nothing of noise schedules (genlab.sampling.diffusion) or
of the loss (genlab.objectives.diffusion). Class-conditional runs reserve
class id `num_classes` as "no class" for classifier-free guidance.

Text-conditional runs (`condition = "text"`) take y as (B, D) caption embeddings from a clip run's text
encoder; an MLP maps one into the time embedding, so it reaches every residual block as the class does (a
per-channel shift, FiLM-style). Not cross-attention: a caption here is one pooled vector, not a sequence of
tokens to attend over, and at 8x8 to 32x32 pixels a global shift steers the whole image at no cost. A zero
row means "no caption" (the learned null embedding), what caption dropout trains for guidance.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.core.config import ModelConfig
from genlab.core.errors import GenlabError
from genlab.core.families import Family


class UNetConfig(ModelConfig):
    name: Literal["ddpm"] = "ddpm"
    channels: int = 32  # feature maps at full resolution
    channel_mult: list[int] = [1, 2]  # per level; each level after the first halves the resolution
    n_res: int = 1  # residual blocks per level
    heads: int = 4  # attention heads at the lowest resolution
    dropout: float = 0.0
    timesteps: int = 1000
    schedule: Literal["linear", "cosine"] = "cosine"
    prediction: Literal["epsilon", "v"] = "epsilon"
    p_uncond: float = 0.1  # label (or caption) dropout for classifier-free guidance (conditional runs)
    # "text": conditioned on a caption's embedding by the text encoder of a clip run (`text_encoder`, its folder)
    condition: Literal["class", "text"] = "class"
    text_encoder: str | None = None
    text_dim: int = 64  # the clip run's embedding width (filled in from it)


def groups(ch: int) -> int:
    return math.gcd(ch, 8)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding as in the transformer: t (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups(c_in), c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(groups(c_out), c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity: stable early training
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]  # (B, c_out, 1, 1): the timestep shifts every feature map
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    """Self-attention over the H*W positions of a (low-resolution) feature map."""

    def __init__(self, ch: int, heads: int):
        super().__init__()
        if ch % heads:
            raise GenlabError(f"model.heads: {heads} does not divide the {ch} channels of the lowest level")
        self.heads = heads
        self.norm = nn.GroupNorm(groups(ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x):
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W).unbind(1)  # (B, nh, hs, HW)
        h = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))  # (B, nh, HW, hs)
        return x + self.proj(h.transpose(-1, -2).reshape(B, C, H, W))


class Level(nn.Module):
    """The blocks of one resolution: residual blocks, each followed by attention where `attend`."""

    def __init__(self, c_in: int, c_out: int, n: int, emb_dim: int, dropout: float, attend: bool, heads: int):
        super().__init__()
        self.res = nn.ModuleList([ResBlock(c_in if i == 0 else c_out, c_out, emb_dim, dropout) for i in range(n)])
        self.attn = nn.ModuleList([Attention(c_out, heads) if attend else nn.Identity() for _ in range(n)])

    def forward(self, h, emb):
        for res, attn in zip(self.res, self.attn):
            h = attn(res(h, emb))
        return h


# What a run of this family trains with unless its config says otherwise.
TRAIN_DEFAULTS = {"lr": 1e-3, "weight_decay": 0.0, "warmup_steps": 100, "batch_size": 64, "ema_decay": 0.999}


class UNet(nn.Module):
    """`forward(x (B, C, H, W), t (B,), y (B,) or None) -> (B, C, H, W)`: the noise (or v) in x at step t."""

    Config = UNetConfig

    def __init__(self, cfg: UNetConfig, shape: tuple[int, int, int], num_classes: int = 0, pixel_range=(-1.0, 1.0)):
        super().__init__()
        c_img, h, w = shape
        levels = len(cfg.channel_mult)
        if h % 2 ** (levels - 1) or w % 2 ** (levels - 1):
            raise GenlabError(f"model.channel_mult: {levels} levels halve the image {levels - 1} times, "
                              f"but {h}x{w} is not divisible by {2 ** (levels - 1)} (set data.image.size)")
        self.config, self.num_classes, self.shape = cfg, num_classes, shape
        ch, emb_dim = cfg.channels, 4 * cfg.channels
        widths = [ch * m for m in cfg.channel_mult]
        self.time_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None  # last id = no class
        self.text = None
        if cfg.condition == "text":
            self.text = nn.Sequential(nn.Linear(cfg.text_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
            self.null_text = nn.Parameter(torch.zeros(emb_dim))
        self.conv_in = nn.Conv2d(c_img, ch, 3, padding=1)
        lowest = levels - 1
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c = ch
        for i, width in enumerate(widths):
            self.down.append(Level(c, width, cfg.n_res, emb_dim, cfg.dropout, i == lowest, cfg.heads))
            self.downsample.append(nn.Conv2d(width, width, 3, stride=2, padding=1) if i < lowest else nn.Identity())
            c = width
        self.mid1 = ResBlock(c, c, emb_dim, cfg.dropout)
        self.mid_attn = Attention(c, cfg.heads)
        self.mid2 = ResBlock(c, c, emb_dim, cfg.dropout)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(levels)):
            self.up.append(Level(c + widths[i], widths[i], cfg.n_res, emb_dim, cfg.dropout, i == lowest, cfg.heads))
            self.upsample.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(widths[i], widths[i], 3, padding=1))
                                 if i > 0 else nn.Identity())
            c = widths[i]
        self.norm_out = nn.GroupNorm(groups(c), c)
        self.conv_out = nn.Conv2d(c, c_img, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def null_class(self) -> int:
        return self.num_classes

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.config.channels))  # (B, 4ch)
        if self.label is not None:
            y = torch.full_like(t, self.null_class) if y is None else torch.where(y < 0, self.null_class, y)
            emb = emb + self.label(y)
        if self.text is not None and y is not None:  # y (B, D) caption embeddings; zero rows: no caption
            none = (y.abs().sum(1, keepdim=True) == 0)
            emb = emb + torch.where(none, self.null_text, self.text(y))
        h = self.conv_in(x)  # (B, ch, H, W)
        skips = []
        for level, down in zip(self.down, self.downsample):
            h = level(h, emb)
            skips.append(h)
            h = down(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)  # (B, c, H/2^(L-1), W/2^(L-1))
        for level, up in zip(self.up, self.upsample):
            h = up(level(torch.cat([h, skips.pop()], dim=1), emb))
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, C, H, W)


FAMILY = Family("ddpm", UNet, "image", sampler="diffusion", exports=("onnx", "int8"), train_defaults=TRAIN_DEFAULTS)
