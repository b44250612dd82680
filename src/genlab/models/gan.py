"""MLP GAN, as in the classic tutorials: both players are multilayer perceptrons on flattened pixels.

    generator:      z (B, latent_dim) [+ label embedding] -> hidden... -> tanh -> image (B, C, H, W)
    discriminator:  image (B, C, H, W) [+ label embedding] -> hidden... -> logit (B,)

Class-conditional (num_classes > 0) in the cGAN way: a label embedding is
concatenated to the input of both players. The adversarial loss lives in
genlab.objectives.gan.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn as nn

from genlab.core.config import ModelConfig
from genlab.core.families import Family


def to_pixel_range(t: torch.Tensor, pixel_range: tuple[float, float]) -> torch.Tensor:
    """tanh output in [-1, 1] -> the data's pixel range."""
    lo, hi = pixel_range
    return lo + (hi - lo) * (t + 1) / 2


class GANConfig(ModelConfig):
    name: Literal["gan"] = "gan"
    latent_dim: int = 64
    hidden: list[int] = [256, 512]  # generator widths; the discriminator uses them reversed
    label_dim: int = 16  # size of the class embedding (conditional runs)
    dropout: float = 0.3  # discriminator dropout, which keeps it from overpowering the generator
    loss: Literal["non-saturating", "hinge"] = "non-saturating"


class Generator(nn.Module):
    def __init__(self, cfg: GANConfig, shape: tuple[int, int, int], num_classes: int, pixel_range: tuple[float, float]):
        super().__init__()
        self.shape, self.pixel_range = shape, pixel_range
        self.label = nn.Embedding(num_classes, cfg.label_dim) if num_classes else None
        layers, width = [], cfg.latent_dim + (cfg.label_dim if num_classes else 0)
        for h in cfg.hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
            width = h
        layers += [nn.Linear(width, math.prod(shape)), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.label is not None:
            z = torch.cat([z, self.label(y)], dim=1)  # (B, latent + label_dim)
        return to_pixel_range(self.net(z).view(-1, *self.shape), self.pixel_range)  # (B, C, H, W)


class Discriminator(nn.Module):
    def __init__(self, cfg: GANConfig, shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        self.label = nn.Embedding(num_classes, cfg.label_dim) if num_classes else None
        layers, width = [], math.prod(shape) + (cfg.label_dim if num_classes else 0)
        for h in reversed(cfg.hidden):
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2), nn.Dropout(cfg.dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = x.flatten(1)  # (B, C*H*W)
        if self.label is not None:
            h = torch.cat([h, self.label(y)], dim=1)
        return self.net(h).squeeze(1)  # (B,) logits


# What a run of this family trains with unless its config says otherwise.
TRAIN_DEFAULTS = {"lr": 2e-4, "beta1": 0.5, "beta2": 0.999, "weight_decay": 0.0, "warmup_steps": 0,
                  "min_lr_ratio": 1.0, "grad_clip": 0.0, "batch_size": 64}


class GAN(nn.Module):
    """Generator and discriminator of an MLP GAN; `generate(z, y)` makes images."""

    Config = GANConfig
    # The DCGAN paper's optimizer settings, which suit both GAN families: Adam(2e-4, beta1=0.5), constant LR.

    def __init__(self, cfg: GANConfig, shape: tuple[int, int, int], num_classes: int = 0, pixel_range=(-1.0, 1.0)):
        super().__init__()
        self.config, self.latent_dim, self.num_classes = cfg, cfg.latent_dim, num_classes
        self.generator = Generator(cfg, shape, num_classes, tuple(pixel_range))
        self.discriminator = Discriminator(cfg, shape, num_classes)

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, latent_dim), y (B,) class ids -> images (B, C, H, W) in the pixel range."""
        return self.generator(z, y)


FAMILY = Family("gan", GAN, "image", sampler="gan", exports=("onnx", "int8"), train_defaults=TRAIN_DEFAULTS)
