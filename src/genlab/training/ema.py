"""An exponential moving average of a run's weights: the weights samples are drawn with where `train.ema_decay`
is set (and the ones model.safetensors keeps)."""

from __future__ import annotations

import torch

from genlab.core.weights import weights_of


class EMA:
    def __init__(self, modules: dict, decay: float):
        self.decay = decay
        self.tensors = {k: v.detach().clone().float() for k, v in weights_of(modules).items()}

    @torch.no_grad()
    def update(self, modules: dict, step: int) -> None:
        # Warmup (as in diffusers' EMAModel): early on the average must forget the random init quickly.
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in weights_of(modules).items():
            if v.dtype.is_floating_point:
                self.tensors[k].mul_(d).add_(v.float(), alpha=1 - d)
            else:
                self.tensors[k].copy_(v)
