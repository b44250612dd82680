"""Exact likelihood of an autoregressive image model: cross-entropy of every pixel's level given the pixels
before it, in nats per dimension (pixel and channel)."""

from __future__ import annotations

import torch.nn as nn


class PixelLikelihood:
    def __init__(self, model: nn.Module):
        self.model = model
        self.modules = {"model": model}
        self.players = {"model": model}

    def losses(self, batch):
        x, y = batch  # (B, C, H, W) in the pixel range, (B,) labels (-1: none)
        loss = self.model.nll(x, y if self.model.num_classes else None)
        yield "model", loss, {"loss": loss.item()}
