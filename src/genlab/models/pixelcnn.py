"""Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN Decoders").

An image is a sequence of pixels in raster order (row by row, left to right),
and the model predicts each pixel's intensity, one of `levels` values, from
the pixels before it:

    x (B, C, H, W) -> first gated layer (the horizontal stack may not see the pixel itself)
      -> n_layers gated layers: vertical stack (everything above) | horizontal stack (left in this row)
      -> relu -> 1x1 conv -> relu -> 1x1 conv -> logits (B, levels, C, H, W)

Two stacks remove the blind spot of the masked-convolution PixelCNN: the
vertical stack's (k//2+1) x k convolutions see the rows above a pixel, the
horizontal stack's 1 x (k//2+1) convolutions the pixels to its left, and the
vertical features reach the horizontal stack only after a shift down by one
row, so nothing from the pixel's own row or below leaks into it. Each layer
gates as tanh(filter) * sigmoid(gate), with a class embedding added to both
where the run has labels. The channels of one pixel are predicted together
from the pixels before it (the paper also orders R -> G -> B inside a pixel;
that mask is left out here to keep the stacks readable).

Training is exact maximum likelihood: cross-entropy over the levels. Sampling
goes pixel by pixel: H x W forward passes, each drawing one pixel from its
distribution with a uniform number derived from the caller's noise, so a seed
fixes the image.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.core.config import ModelConfig
from genlab.core.families import Family
from genlab.core import cancel
from genlab.core.progress import progress_bar


class PixelCNNConfig(ModelConfig):
    name: Literal["pixelcnn"] = "pixelcnn"
    channels: int = 32  # feature maps of each stack
    n_layers: int = 5  # gated layers after the first
    kernel_size: int = 5  # odd: the vertical stack sees k//2 rows up, the horizontal k//2 pixels left per layer
    levels: int = 256  # intensity levels per channel (2: binarized images, scored in nats per image)
    head_channels: int = 64
    label_dim: int = 16  # class embedding width (class-conditional runs)


def down_shift(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> the same, moved down one row (row 0 zeros): row i now holds what row i-1 held."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


def right_shift(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> moved right one column (column 0 zeros)."""
    return F.pad(x, (1, 0))[..., :-1]


class GatedLayer(nn.Module):
    def __init__(self, cfg: PixelCNNConfig, in_channels: int, first: bool, num_classes: int):
        super().__init__()
        C, k = cfg.channels, cfg.kernel_size
        self.first, self.half = first, k // 2
        self.vertical = nn.Conv2d(in_channels, 2 * C, (k // 2 + 1, k))  # rows i-k//2 .. i, columns j-k//2 .. j+k//2
        self.horizontal = nn.Conv2d(in_channels, 2 * C, (1, k // 2 + 1))  # row i, columns j-k//2 .. j
        self.vertical_to_horizontal = nn.Conv2d(2 * C, 2 * C, 1)
        self.out = nn.Conv2d(C, C, 1)
        self.label = nn.Linear(cfg.label_dim, 2 * C) if num_classes else None

    @staticmethod
    def gate(z: torch.Tensor) -> torch.Tensor:
        f, g = z.chunk(2, dim=1)
        return torch.tanh(f) * torch.sigmoid(g)

    def forward(self, v: torch.Tensor, h: torch.Tensor, label: torch.Tensor | None):
        """v, h (B, C_in, H, W) -> (v, h) (B, C, H, W). v at row i has seen rows <= i; h at (i, j) the pixels
        before (i, j) in raster order."""
        k2 = self.half
        v_feat = self.vertical(F.pad(v, (k2, k2, k2, 0)))  # (B, 2C, H, W): rows <= i
        h_in = F.pad(h, (k2, 0))
        h_feat = self.horizontal(h_in)  # (B, 2C, H, W): columns <= j of row i
        if self.first:  # the input itself: the pixel (i, j) must not see its own value
            h_feat = right_shift(h_feat)
        h_feat = h_feat + self.vertical_to_horizontal(down_shift(v_feat))  # rows < i only
        if self.label is not None and label is not None:
            shift = self.label(label)[:, :, None, None]  # (B, 2C, 1, 1)
            v_feat, h_feat = v_feat + shift, h_feat + shift
        v_out = self.gate(v_feat)
        h_out = self.out(self.gate(h_feat))
        return v_out, h_out if self.first else h + h_out


# What a run of this family trains with unless its config says otherwise.
TRAIN_DEFAULTS = {"lr": 1e-3, "weight_decay": 0.0}


class PixelCNN(nn.Module):
    Config = PixelCNNConfig

    def __init__(self, cfg: PixelCNNConfig, shape: tuple[int, int, int], num_classes: int = 0,
                 pixel_range: tuple[float, float] = (-1.0, 1.0)):
        super().__init__()
        if cfg.kernel_size % 2 == 0:
            raise ValueError("model.kernel_size: must be odd")
        if cfg.levels < 2:
            raise ValueError("model.levels: at least 2")
        self.cfg, self.shape, self.num_classes, self.pixel_range = cfg, tuple(shape), num_classes, pixel_range
        self.autoregressive = True  # generate() makes one forward pass per pixel
        self.noise_shape = self.shape  # one Gaussian number per pixel and channel decides its draw
        self.levels = cfg.levels
        C = shape[0]
        self.label_embedding = nn.Embedding(num_classes, cfg.label_dim) if num_classes else None
        self.layers = nn.ModuleList([GatedLayer(cfg, C, True, num_classes)] +
                                    [GatedLayer(cfg, cfg.channels, False, num_classes) for _ in range(cfg.n_layers)])
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(cfg.channels, cfg.head_channels, 1), nn.ReLU(),
                                  nn.Conv2d(cfg.head_channels, C * cfg.levels, 1))

    # ---- pixels <-> levels -------------------------------------------------------------------------

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """Images in the pixel range -> integer levels (B, C, H, W); with 2 levels, a threshold at mid-grey."""
        lo, hi = self.pixel_range
        unit = ((x - lo) / (hi - lo)).clamp(0, 1)
        return torch.round(unit * (self.levels - 1)).long()

    def to_input(self, levels: torch.Tensor) -> torch.Tensor:
        """Levels -> what the network reads, in [-1, 1]."""
        return levels.float() / (self.levels - 1) * 2 - 1

    # ---- the model ---------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, H, W) images in the pixel range, y (B,) labels -> logits (B, levels, C, H, W)."""
        return self.logits(self.to_input(self.quantize(x)), y)

    def logits(self, inp: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        label = self.label_embedding(y.clamp(min=0)) if self.label_embedding is not None and y is not None else None
        v = h = inp
        for layer in self.layers:
            v, h = layer(v, h, label)
        B, C, H, W = inp.shape
        return self.head(h).view(B, self.levels, C, H, W)

    def nll(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Mean negative log-likelihood in nats per dimension (pixel and channel) of images x."""
        return F.cross_entropy(self.forward(x, y), self.quantize(x))

    @torch.no_grad()
    def generate(self, noise: torch.Tensor, y: torch.Tensor | None = None, progress: bool = False) -> torch.Tensor:
        """noise (n, C, H, W) standard normal -> images (n, C, H, W) in the pixel range, drawn pixel by pixel:
        each pixel's draw inverts its predicted CDF at Phi(noise) (so the noise, and a seed, fix the image)."""
        uniforms = 0.5 * (1 + torch.erf(noise / 2 ** 0.5))  # (n, C, H, W) in (0, 1)
        n, C, H, W = noise.shape
        levels = torch.zeros(n, C, H, W, dtype=torch.long, device=noise.device)
        for p in progress_bar(range(H * W), desc="pixels", unit="px", enabled=progress, leave=False):
            cancel.check()
            i, j = divmod(p, W)
            # Rows below i cannot change row i's predictions (nothing looks up), so they are left out: half the work.
            probs = self.logits(self.to_input(levels[:, :, : i + 1]), y)[:, :, :, i, j].float().softmax(1)  # (n, levels, C)
            cdf = probs.cumsum(1).transpose(1, 2)  # (n, C, levels)
            drawn = torch.searchsorted(cdf, (uniforms[:, :, i, j] * cdf[..., -1]).unsqueeze(-1).contiguous(), right=True)
            levels[:, :, i, j] = drawn.squeeze(-1).clamp(max=self.levels - 1)
        lo, hi = self.pixel_range
        return lo + (hi - lo) * levels.float() / (self.levels - 1)


FAMILY = Family("pixelcnn", PixelCNN, "image", sampler="autoregressive", train_defaults=TRAIN_DEFAULTS)
