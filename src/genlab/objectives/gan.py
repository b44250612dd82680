"""The adversarial game: the discriminator steps first, then the generator against the updated discriminator.

Losses (logits d = D(x)):
    non-saturating (Goodfellow et al. 2014):  D: softplus(-d_real) + softplus(d_fake)   G: softplus(-d_fake)
    hinge (Lim & Ye 2017; Miyato et al. 2018): D: relu(1 - d_real) + relu(1 + d_fake)    G: -d_fake

With `r1_gamma` > 0 the discriminator also pays gamma/2 * |grad_x D(x)|^2 at real images (R1, Mescheder et
al. 2018): a discriminator flat around the data cannot push the generator past it, and the game settles.
The penalty needs a second backward pass, so as in StyleGAN2 it is paid lazily: every `r1_interval` steps,
times r1_interval, which costs the same in expectation.
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

    def __init__(self, model: nn.Module, loss: str = "non-saturating", r1_gamma: float = 0.0, r1_interval: int = 1):
        self.model, self.kind, self.r1_gamma, self.r1_interval = model, loss, r1_gamma, r1_interval
        self.batches = 0  # batches seen: picks the lazy R1 steps (and is checkpointed, so resume picks the same)
        self.modules = {"model": model}
        self.players = {"discriminator": model.discriminator, "generator": model.generator}

    def losses(self, batch):
        real, y = batch  # (B, C, H, W), (B,)
        y = y if self.model.num_classes else None
        z = torch.randn(real.shape[0], self.model.latent_dim, device=real.device)
        fake = self.model.generator(z, y)
        r1_now = self.r1_gamma > 0 and self.batches % self.r1_interval == 0
        self.batches += 1
        if r1_now:
            real = real.detach().requires_grad_(True)
        d_real = self.model.discriminator(real, y)
        d_loss = discriminator_loss(d_real, self.model.discriminator(fake.detach(), y), self.kind)
        logs = {}
        if r1_now:
            (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
            r1 = grad.pow(2).flatten(1).sum(1).mean()
            d_loss = d_loss + self.r1_gamma / 2 * self.r1_interval * r1
            logs["r1"] = r1.item()
        yield "discriminator", d_loss, {"d_loss": d_loss.item(), **logs}
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

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"batches": torch.tensor(self.batches)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.batches = int(state.get("batches", torch.tensor(0)))
