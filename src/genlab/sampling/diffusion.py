"""Noise schedules and samplers for diffusion; they know nothing of networks.

    schedule = NoiseSchedule("cosine", 1000)
    x_t = schedule.add_noise(x0, noise, t)                         # forward process q(x_t | x0)
    x0  = sample(denoise, shape, schedule, steps=50, sampler="ddim", prediction="epsilon", generator=g)

`denoise(x_t (B, C, H, W), t (B,)) -> model output` is any callable: the
pipeline wraps the network (and classifier-free guidance) into it. DDPM is
ancestral sampling (Ho et al. 2020) on a respaced schedule (Nichol & Dhariwal
2021), so it too runs with any number of steps; DDIM (Song et al. 2021) is
deterministic (eta = 0): the same noise always gives the same image.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator, Literal

import torch
from genlab.core import cancel
from genlab.core.progress import progress_bar


class NoiseSchedule:
    """alpha_bar(t) for t = 0..T-1: the fraction of signal variance left at step t."""

    def __init__(self, kind: Literal["linear", "cosine"] = "linear", timesteps: int = 1000):
        self.kind, self.timesteps = kind, timesteps
        if kind == "linear":  # Ho et al.: betas from 1e-4 to 0.02 over 1000 steps, rescaled for other T
            scale = 1000 / timesteps
            betas = torch.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=torch.float64)
            alpha_bar = torch.cumprod(1 - betas, dim=0)
        else:  # Nichol & Dhariwal: alpha_bar follows cos^2, each beta capped at 0.999
            s = 0.008
            f = lambda t: math.cos((t / timesteps + s) / (1 + s) * math.pi / 2) ** 2
            betas = torch.tensor([min(1 - f(t + 1) / f(t), 0.999) for t in range(timesteps)], dtype=torch.float64)
            alpha_bar = torch.cumprod(1 - betas, dim=0)
        self.alpha_bar = alpha_bar.float()  # (T,)

    def _ab(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return self.alpha_bar.to(like.device)[t].view(-1, *([1] * (like.dim() - 1)))  # (B, 1, 1, 1)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(ab) x0 + sqrt(1 - ab) noise; x0, noise (B, C, H, W), t (B,) int."""
        ab = self._ab(t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def velocity(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The v-prediction target (Salimans & Ho 2022): sqrt(ab) noise - sqrt(1 - ab) x0."""
        ab = self._ab(t, x0)
        return ab.sqrt() * noise - (1 - ab).sqrt() * x0

    def split(self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, prediction: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Model output at x_t -> (x0 estimate, noise estimate)."""
        a, s = self._ab(t, x_t).sqrt(), (1 - self._ab(t, x_t)).sqrt()  # x_t = a x0 + s noise, a^2 + s^2 = 1
        if prediction == "v":  # v = a noise - s x0
            return a * x_t - s * output, a * output + s * x_t
        return (x_t - s * output) / a, output

    def timesteps_for(self, steps: int) -> list[int]:
        """`steps` timesteps evenly spaced over 0..T-1, descending (all of them when steps >= T)."""
        steps = max(1, min(steps, self.timesteps))
        ts = torch.linspace(0, self.timesteps - 1, steps).round().long().unique().tolist()
        return sorted(ts, reverse=True)


def ddpm_step(schedule: NoiseSchedule, x_t, x0, t: int, t_prev: int, generator: torch.Generator | None) -> torch.Tensor:
    """One ancestral step from t to t_prev (-1 = done): a draw from the posterior q(x_prev | x_t, x0)."""
    ab_t = schedule.alpha_bar[t].item()
    ab_prev = schedule.alpha_bar[t_prev].item() if t_prev >= 0 else 1.0
    beta = 1 - ab_t / ab_prev  # the respaced step's beta
    mean = (math.sqrt(ab_prev) * beta / (1 - ab_t)) * x0 + (math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab_t)) * x_t
    if t_prev < 0:
        return mean
    var = beta * (1 - ab_prev) / (1 - ab_t)
    noise = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
    return mean + math.sqrt(var) * noise


def ddim_step(schedule: NoiseSchedule, x0, eps, t_prev: int) -> torch.Tensor:
    """One deterministic DDIM step (eta = 0) to t_prev (-1 = done): re-noise x0 with the predicted noise."""
    ab_prev = schedule.alpha_bar[t_prev].item() if t_prev >= 0 else 1.0
    return math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev) * eps


def sample(*args, **kwargs) -> torch.Tensor:
    """Run the whole reverse process (arguments as denoising_steps) -> x0, estimates clipped to `clip`."""
    x = None
    for x in denoising_steps(*args, **kwargs):
        pass
    return x


def denoising_steps(
    denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    shape: tuple[int, ...],
    schedule: NoiseSchedule,
    steps: int,
    sampler: Literal["ddpm", "ddim"],
    prediction: str,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    clip: tuple[float, float] | None = (-1.0, 1.0),
    x_T: torch.Tensor | None = None,
    progress: bool = False,
) -> Iterator[torch.Tensor]:
    """The reverse process one step at a time, as the step engine runs text: yields x after each step (the
    last is x0). A caller may stop early (a client went away) or show the images as they sharpen."""
    x = x_T if x_T is not None else torch.randn(shape, generator=generator, device=device)
    ts = schedule.timesteps_for(steps)
    for i, t in enumerate(progress_bar(ts, desc=f"{sampler} sampling", unit="step", enabled=progress, leave=False)):
        cancel.check()
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        x0, eps = schedule.split(denoise(x, tt), x, tt, prediction)
        if clip is not None:
            x0 = x0.clamp(*clip)
            if sampler == "ddim":  # keep the noise consistent with the clipped x0
                ab = schedule.alpha_bar[t].item()
                eps = (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
        x = ddpm_step(schedule, x, x0, t, t_prev, generator) if sampler == "ddpm" else ddim_step(schedule, x0, eps, t_prev)
        yield x
