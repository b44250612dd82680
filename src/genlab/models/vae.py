"""Convolutional VAE (Kingma & Welling 2013): encoder to a Gaussian posterior, decoder back to pixels.

    encoder:  image (B, C, H, W) -> conv 3/1 -> L x [conv 4/2, SiLU] -> flatten [+ label emb] -> (mu, logvar) (B, latent)
    sample:   z = mu + exp(logvar / 2) * eps                      (reparameterization: gradients flow to mu, logvar)
    decoder:  z [+ label emb] -> linear -> (B, ch*2^(L-1), s, s) -> L x [convT 4/2, SiLU] -> conv 3/1 -> tanh -> image

The ELBO (reconstruction + kl_weight * KL) is in genlab.objectives.vae.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn

from genlab.core.config import ModelConfig
from genlab.core.families import Family
from genlab.models.dcgan import check_square
from genlab.models.gan import to_pixel_range


class VAEConfig(ModelConfig):
    name: Literal["vae"] = "vae"
    latent_dim: int = 16
    channels: int = 32  # feature maps at half the image side; doubled at each lower resolution
    n_layers: int = 2
    label_dim: int = 16
    kl_weight: float = 1.0  # beta of a beta-VAE: < 1 sharper reconstructions, > 1 a smoother latent space


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig, shape, num_classes: int):
        super().__init__()
        side = check_square(shape, cfg.n_layers, "vae")
        layers, ch = [nn.Conv2d(shape[0], cfg.channels, 3, 1, 1), nn.SiLU()], cfg.channels
        for i in range(cfg.n_layers):
            out = cfg.channels * 2 ** i
            layers += [nn.Conv2d(ch, out, 4, 2, 1), nn.SiLU()]
            ch = out
        self.net = nn.Sequential(*layers, nn.Flatten())
        self.label = nn.Embedding(num_classes, cfg.label_dim) if num_classes else None
        features = ch * (side // 2 ** cfg.n_layers) ** 2 + (cfg.label_dim if num_classes else 0)
        self.posterior = nn.Linear(features, 2 * cfg.latent_dim)

    def forward(self, x, y=None):
        h = self.net(x)  # (B, features)
        if self.label is not None:
            h = torch.cat([h, self.label(y)], dim=1)
        mu, logvar = self.posterior(h).chunk(2, dim=1)  # (B, latent) each
        return mu, logvar


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig, shape, num_classes: int, pixel_range):
        super().__init__()
        side = check_square(shape, cfg.n_layers, "vae")
        self.pixel_range = pixel_range
        start, width = side // 2 ** cfg.n_layers, cfg.channels * 2 ** (cfg.n_layers - 1)
        self.label = nn.Embedding(num_classes, cfg.label_dim) if num_classes else None
        z_dim = cfg.latent_dim + (cfg.label_dim if num_classes else 0)
        self.project = nn.Sequential(nn.Linear(z_dim, width * start * start), nn.Unflatten(1, (width, start, start)), nn.SiLU())
        layers, ch = [], width
        for i in range(cfg.n_layers):
            out = max(cfg.channels, ch // 2)
            layers += [nn.ConvTranspose2d(ch, out, 4, 2, 1), nn.SiLU()]
            ch = out
        layers += [nn.Conv2d(ch, shape[0], 3, 1, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z, y=None):
        if self.label is not None:
            z = torch.cat([z, self.label(y)], dim=1)
        return to_pixel_range(self.net(self.project(z)), self.pixel_range)  # (B, C, H, W)


# What a run of this family trains with unless its config says otherwise.
TRAIN_DEFAULTS = {"lr": 1e-3, "weight_decay": 0.0, "warmup_steps": 50, "batch_size": 64}


class VAE(nn.Module):
    """`encode(x, y) -> (mu, logvar)`, `decode(z, y) -> x`, `forward(x, y) -> (reconstruction, mu, logvar)`."""

    Config = VAEConfig

    def __init__(self, cfg: VAEConfig, shape: tuple[int, int, int], num_classes: int = 0, pixel_range=(-1.0, 1.0)):
        super().__init__()
        self.config, self.latent_dim, self.num_classes = cfg, cfg.latent_dim, num_classes
        self.encoder = Encoder(cfg, shape, num_classes)
        self.decoder = Decoder(cfg, shape, num_classes, tuple(pixel_range))

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x, y)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(z, y)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        mu, logvar = self.encode(x, y)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.decode(z, y), mu, logvar

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Samples from the prior: z (B, latent_dim) ~ N(0, I), y (B,) -> images (B, C, H, W)."""
        return self.decode(z, y)


FAMILY = Family("vae", VAE, "image", sampler="vae", exports=("onnx", "int8"), train_defaults=TRAIN_DEFAULTS,
                abilities=frozenset({"reconstruct"}))
