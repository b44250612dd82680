"""The adversarial game: the discriminator steps first, then the generator against the updated discriminator.

Losses (logits d = D(x)):
    non-saturating (Goodfellow et al. 2014):  D: softplus(-d_real) + softplus(d_fake)   G: softplus(-d_fake)
    hinge (Lim & Ye 2017; Miyato et al. 2018): D: relu(1 - d_real) + relu(1 + d_fake)    G: -d_fake
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "hinge":
        return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
    return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()


def generator_loss(d_fake: torch.Tensor, kind: str) -> torch.Tensor:
    return -d_fake.mean() if kind == "hinge" else F.softplus(-d_fake).mean()


class Adversarial:
    """Two players, `discriminator` and `generator`; `losses` yields the discriminator's loss, then the generator's."""

    def __init__(self, model: nn.Module, loss: str = "non-saturating"):
        self.model, self.kind = model, loss
        self.modules = {"model": model}
        self.players = {"discriminator": model.discriminator, "generator": model.generator}

    def losses(self, batch):
        real, y = batch  # (B, C, H, W), (B,)
        y = y if self.model.num_classes else None
        z = torch.randn(real.shape[0], self.model.latent_dim, device=real.device)
        fake = self.model.generator(z, y)
        d_loss = discriminator_loss(self.model.discriminator(real, y), self.model.discriminator(fake.detach(), y), self.kind)
        yield "discriminator", d_loss, {"d_loss": d_loss.item()}
        # The trainer has now stepped the discriminator. Freeze it while the generator's loss is
        # backpropagated, so that no stale gradient lands in its parameters for the next step.
        frozen = [p for p in self.model.discriminator.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            g_loss = generator_loss(self.model.discriminator(fake, y), self.kind)
            yield "generator", g_loss, {"g_loss": g_loss.item()}
        finally:
            for p in frozen:
                p.requires_grad_(True)
