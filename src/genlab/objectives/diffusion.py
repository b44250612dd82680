"""Denoising: noise an image to a random step and regress the noise (or v) the network should predict."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.sampling.diffusion import NoiseSchedule


class Denoising:
    """The simple DDPM loss: E_t,noise || model(x_t, t, y) - target ||^2, with label dropout for guidance."""

    def __init__(self, model: nn.Module, schedule: NoiseSchedule, prediction: str = "epsilon", p_uncond: float = 0.1):
        self.model, self.schedule, self.prediction, self.p_uncond = model, schedule, prediction, p_uncond
        self.modules = {"model": model}
        self.players = {"model": model}

    def losses(self, batch):
        x0, y = batch  # (B, C, H, W) in the pixel range, (B,) labels (-1 = none)
        t = torch.randint(0, self.schedule.timesteps, (x0.shape[0],), device=x0.device)
        noise = torch.randn_like(x0)
        x_t = self.schedule.add_noise(x0, noise, t)
        if self.p_uncond > 0 and y.is_floating_point():  # caption embeddings (B, D): a dropped one is all zeros
            y = y * (torch.rand(y.shape[0], 1, device=y.device) >= self.p_uncond)
        elif self.p_uncond > 0:  # drop labels so one network also learns p(x), for classifier-free guidance
            y = torch.where(torch.rand(y.shape, device=y.device) < self.p_uncond, torch.full_like(y, -1), y)
        target = self.schedule.velocity(x0, noise, t) if self.prediction == "v" else noise
        loss = F.mse_loss(self.model(x_t, t, y).float(), target)
        yield "model", loss, {"loss": loss.item()}
