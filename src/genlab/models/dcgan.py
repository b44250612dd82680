"""DCGAN (Radford et al. 2015): a transposed-conv generator and a strided-conv discriminator, batch norm in both.

    generator:      z (B, latent) [+ label emb] -> linear -> (B, ch*2^(L-1), s, s) -> L x [convT 4/2, BN, ReLU] -> tanh
                    with s = size / 2^L; the last transposed conv emits the image channels
    discriminator:  image -> conv 4/2, LeakyReLU -> (L-1) x [conv 4/2, BN, LeakyReLU] -> linear -> logit
                    [+ projection of the label embedding onto the features (Miyato & Koyama 2018)]

Images must be square with a side divisible by 2^n_layers (8x8 digits with
n_layers=2 start from 2x2; 28x28 MNIST from 7x7; 32x32 CIFAR from 4x4 with 3).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn

from genlab.core.config import ModelConfig
from genlab.core.errors import GenlabError
from genlab.core.families import Family
from genlab.models.gan import to_pixel_range


class DCGANConfig(ModelConfig):
    name: Literal["dcgan"] = "dcgan"
    latent_dim: int = 64
    channels: int = 64  # feature maps at half the image side; doubled at each lower resolution
    n_layers: int = 2  # upsampling (generator) / downsampling (discriminator) stages
    label_dim: int = 16
    loss: Literal["non-saturating", "hinge"] = "non-saturating"


def check_square(shape: tuple[int, int, int], n_layers: int, family: str) -> int:
    """The side of a square image divisible by 2**n_layers; otherwise a one-line error."""
    _, h, w = shape
    if h != w or h % (2 ** n_layers):
        raise GenlabError(f"model.n_layers: {family} needs square images with a side divisible by {2 ** n_layers}, "
                          f"got {h}x{w} (set data.image.size or model.n_layers)")
    return h


class Generator(nn.Module):
    def __init__(self, cfg: DCGANConfig, shape, num_classes: int, pixel_range):
        super().__init__()
        c_img, side = shape[0], check_square(shape, cfg.n_layers, "dcgan")
        self.pixel_range = pixel_range
        self.start = side // 2 ** cfg.n_layers
        self.width = cfg.channels * 2 ** (cfg.n_layers - 1)
        self.label = nn.Embedding(num_classes, cfg.label_dim) if num_classes else None
        z_dim = cfg.latent_dim + (cfg.label_dim if num_classes else 0)
        self.project = nn.Sequential(nn.Linear(z_dim, self.width * self.start ** 2, bias=False),
                                     nn.Unflatten(1, (self.width, self.start, self.start)),
                                     nn.BatchNorm2d(self.width), nn.ReLU())
        layers, ch = [], self.width
        for i in range(cfg.n_layers - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU()]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, c_img, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.label is not None:
            z = torch.cat([z, self.label(y)], dim=1)
        h = self.project(z)  # (B, width, s, s)
        return to_pixel_range(self.net(h), self.pixel_range)  # (B, C, H, W)


class Discriminator(nn.Module):
    def __init__(self, cfg: DCGANConfig, shape, num_classes: int):
        super().__init__()
        c_img, side = shape[0], check_square(shape, cfg.n_layers, "dcgan")
        ch = cfg.channels
        layers = [nn.Conv2d(c_img, ch, 4, 2, 1), nn.LeakyReLU(0.2)]  # no BN on the input layer, as in the paper
        for _ in range(cfg.n_layers - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2), nn.LeakyReLU(0.2)]
            ch *= 2
        self.net = nn.Sequential(*layers, nn.Flatten())
        features = ch * (side // 2 ** cfg.n_layers) ** 2
        self.head = nn.Linear(features, 1)
        self.label = nn.Embedding(num_classes, features) if num_classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.net(x)  # (B, features)
        logit = self.head(h).squeeze(1)  # (B,)
        if self.label is not None:
            logit = logit + (self.label(y) * h).sum(1)  # projection discriminator
        return logit


# What a run of this family trains with unless its config says otherwise.
TRAIN_DEFAULTS = {"lr": 2e-4, "beta1": 0.5, "beta2": 0.999, "weight_decay": 0.0, "warmup_steps": 0,
                  "min_lr_ratio": 1.0, "grad_clip": 0.0, "batch_size": 64}


class DCGAN(nn.Module):
    """Generator and discriminator of a DCGAN; `generate(z, y)` makes images."""

    Config = DCGANConfig

    def __init__(self, cfg: DCGANConfig, shape: tuple[int, int, int], num_classes: int = 0, pixel_range=(-1.0, 1.0)):
        super().__init__()
        self.config, self.latent_dim, self.num_classes = cfg, cfg.latent_dim, num_classes
        self.generator = Generator(cfg, shape, num_classes, tuple(pixel_range))
        self.discriminator = Discriminator(cfg, shape, num_classes)
        for m in self.modules():  # the paper's init: N(0, 0.02) weights, BN gains N(1, 0.02)
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, latent_dim), y (B,) class ids -> images (B, C, H, W) in the pixel range."""
        return self.generator(z, y)


FAMILY = Family("dcgan", DCGAN, "image", sampler="gan", exports=("onnx", "int8"), train_defaults=TRAIN_DEFAULTS)
