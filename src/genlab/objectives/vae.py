"""The VAE's negative ELBO: reconstruction error plus a weighted KL divergence to the N(0, I) prior."""

from __future__ import annotations

import torch
import torch.nn as nn


def negative_elbo(x, reconstruction, mu, logvar, kl_weight: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pixel (loss, reconstruction, kl), batch means.

    Reconstruction is the squared error summed over pixels (a Gaussian decoder
    of fixed variance); KL(q(z|x) || N(0, I)) is in closed form. Both are
    divided by the pixel count so that the numbers read alike at any image size.
    """
    pixels = x[0].numel()
    rec = (reconstruction.float() - x).pow(2).flatten(1).sum(1).mean() / pixels
    kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean() / pixels
    return rec + kl_weight * kl, rec, kl


class ELBO:
    def __init__(self, model: nn.Module, kl_weight: float = 1.0):
        self.model, self.kl_weight = model, kl_weight
        self.modules = {"model": model}
        self.players = {"model": model}

    def losses(self, batch):
        x, y = batch  # (B, C, H, W), (B,)
        reconstruction, mu, logvar = self.model(x, y if self.model.num_classes else None)
        loss, rec, kl = negative_elbo(x, reconstruction, mu, logvar, self.kl_weight)
        yield "model", loss, {"loss": loss.item(), "rec_loss": rec.item(), "kl_loss": kl.item()}
