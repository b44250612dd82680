"""Next-token prediction: the cross-entropy of every position's logits against the token after it."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def token_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """logits (B, T, V), targets (B, T) with -1 for padding -> per-token loss in nats (B*T,), 0 at padding."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1, reduction="none")


class LanguageModeling:
    def __init__(self, model: nn.Module, forward=None):
        self.model = model
        self.forward = forward or model  # a compiled forward where torch.compile is on
        self.modules = {"model": model}
        self.players = {"model": model}

    def losses(self, batch):
        x, y = batch  # (B, T) inputs and (B, T) targets
        logits = self.forward(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1), ignore_index=-1)
        yield "model", loss, {"loss": loss.item()}
