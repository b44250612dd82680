"""The adversarial game: the discriminator steps first, then the generator against the updated discriminator.

Losses (logits d = D(x)):
    non-saturating (Goodfellow et al. 2014):  D: softplus(-d_real) + softplus(d_fake)   G: softplus(-d_fake)
    hinge (Lim & Ye 2017; Miyato et al. 2018): D: relu(1 - d_real) + relu(1 + d_fake)    G: -d_fake

With `r1_gamma` > 0 the discriminator also pays gamma/2 * |grad_x D(x)|^2 at real images (R1, Mescheder et
al. 2018): a discriminator flat around the data cannot push the generator past it, and the game settles.
The penalty needs a second backward pass, so as in StyleGAN2 it is paid lazily: every `r1_interval` steps,
times r1_interval, which costs the same in expectation.

With `pl_weight` > 0 (StyleGAN) the generator pays for uneven path lengths (Karras et al. 2020): a fixed-size step
in w should move the image by the same amount everywhere, so the penalty is the squared distance of each
image's |J_w^T y| (y image-sized noise) from its running mean; lazily too, every `pl_interval` steps. With an
`augment` policy (objectives/augment.py) the discriminator only ever sees real and generated images
augmented alike, in both players' steps.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.objectives.augment import diff_augment


def discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "hinge":
        return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
    return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()


def generator_loss(d_fake: torch.Tensor, kind: str) -> torch.Tensor:
    return -d_fake.mean() if kind == "hinge" else F.softplus(-d_fake).mean()


class Adversarial:
    """Two players, `discriminator` and `generator`; `losses` yields the discriminator's loss, then the generator's."""

    def __init__(self, model: nn.Module, loss: str = "non-saturating", r1_gamma: float = 0.0, r1_interval: int = 1,
                 pl_weight: float = 0.0, pl_interval: int = 4, augment: tuple[str, ...] = ()):
        self.model, self.kind, self.r1_gamma, self.r1_interval = model, loss, r1_gamma, r1_interval
        self.pl_weight, self.pl_interval, self.augment = pl_weight, pl_interval, augment
        self.batches = 0  # batches seen: picks the lazy R1 steps (and is checkpointed, so resume picks the same)
        self.pl_mean = torch.zeros(())  # the running mean path length the penalty pulls towards
        self.modules = {"model": model}
        self.players = {"discriminator": model.discriminator, "generator": model.generator}

    def losses(self, batch):
        real, y = batch  # (B, C, H, W), (B,)
        y = y if self.model.num_classes else None
        z = torch.randn(real.shape[0], self.model.latent_dim, device=real.device)
        fake = self.model.generator(z, y)
        r1_now = self.r1_gamma > 0 and self.batches % self.r1_interval == 0
        pl_now = self.pl_weight > 0 and self.batches % self.pl_interval == 0
        self.batches += 1
        if r1_now:
            real = real.detach().requires_grad_(True)
        d_real = self.model.discriminator(self.seen(real), y)
        d_loss = discriminator_loss(d_real, self.model.discriminator(self.seen(fake.detach()), y), self.kind)
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
            g_loss = generator_loss(self.model.discriminator(self.seen(fake), y), self.kind)
            logs = {"g_loss": g_loss.item()}
            if pl_now:  # on half the batch, as StyleGAN2: the penalty's second backward is the costly part
                half = max(1, z.shape[0] // 2)
                lengths = self.model.path_lengths(z[:half], y[:half] if y is not None else None)
                self.pl_mean = self.pl_mean.to(lengths.device).lerp(lengths.mean().detach(), 0.01)
                penalty = (lengths - self.pl_mean).pow(2).mean()
                g_loss = g_loss + self.pl_weight * self.pl_interval * penalty
                logs["path_length"] = lengths.mean().item()
            yield "generator", g_loss, logs
        finally:
            for p in frozen:
                p.requires_grad_(True)

    def seen(self, images: torch.Tensor) -> torch.Tensor:
        """Images as the discriminator sees them: augmented by the policy, if any."""
        return diff_augment(images, self.augment) if self.augment else images

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"batches": torch.tensor(self.batches), "pl_mean": self.pl_mean.detach().cpu()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.batches = int(state.get("batches", torch.tensor(0)))
        self.pl_mean = state.get("pl_mean", torch.zeros(())).clone()
