"""How each kind of image model turns noise and a condition into images: one small pipeline per kind, as
diffusers has one pipeline per model kind over shared schedulers.

    LatentPipeline          GAN, DCGAN, VAE, StyleGAN: z (n, latent_dim) -> model.generate(z, y[, psi])
    AutoregressivePipeline  PixelCNN: one Gaussian number per pixel decides its draw -> model.generate
    DiffusionPipeline       DDPM/DDIM over the run's NoiseSchedule, with classifier-free guidance

A family names its pipeline by its spec's `sampler` (genlab.core.families); `PIPELINES` maps the name to the class.
Every pipeline draws its starting noise on the CPU from a seed, so any device makes the same images.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from genlab.core.errors import GenlabError
from genlab.sampling.diffusion import NoiseSchedule, denoising_steps


class ImagePipeline:
    """What all kinds share: the model, its device and the run's image options (config.data.image)."""

    def __init__(self, model, config, device):
        self.model, self.config, self.device = model, config, device
        self.opts = config.data.image
        self.pixel_range = tuple(self.opts.pixel_range)

    def noise_shape(self) -> tuple[int, ...]:
        return (self.model.latent_dim,)

    def noise(self, n: int, seed: int) -> torch.Tensor:
        """The starting noise of n images, from `seed`."""
        return torch.randn((n, *self.noise_shape()), generator=torch.Generator().manual_seed(seed)).to(self.device)

    def images(self, noise: torch.Tensor, y, seed: int, steps=None, sampler=None, guidance=None, progress: bool = False,
               truncation: float | None = None) -> torch.Tensor:
        """Images (n, C, H, W) in the pixel range from `noise` and the condition `y` (None, class ids or caption
        embeddings)."""
        return self.model.generate(noise, y) if truncation is None else self.model.generate(noise, y, truncation)

    def frames(self, noise: torch.Tensor, y, seed: int, steps=None, sampler=None, guidance=None,
               frames: int = 4) -> Iterator[tuple[int, int, torch.Tensor]]:
        """(step, total steps, images) as the images form; a one-shot model yields them once."""
        yield 1, 1, self.images(noise, y, seed)

    def settings(self, steps=None, sampler=None) -> dict:
        """The sampling settings an evaluation reports beside its figures (none for a one-shot model)."""
        return {}


class LatentPipeline(ImagePipeline):
    """A decoder from a latent vector: GANs, VAEs, StyleGAN (`truncation`: its psi in w space)."""


class AutoregressivePipeline(ImagePipeline):
    """PixelCNN: pixels one at a time, each draw decided by its own Gaussian number (so a seed fixes the image)."""

    def noise_shape(self) -> tuple[int, ...]:
        return tuple(self.model.noise_shape)

    def images(self, noise, y, seed, steps=None, sampler=None, guidance=None, progress=False, truncation=None):
        return self.model.generate(noise, y, progress=progress)


class DiffusionPipeline(ImagePipeline):
    """The reverse process from x_T: DDPM (every step) or DDIM (fewer), guided by `guidance` when conditioned."""

    def __init__(self, model, config, device):
        super().__init__(model, config, device)
        self.schedule = NoiseSchedule(config.model.schedule, config.model.timesteps)

    def noise_shape(self) -> tuple[int, ...]:
        return tuple(self.model.shape)

    def sampling_steps(self, steps: int | None, sampler: str | None) -> tuple[str, int]:
        """(sampler, steps) to sample with when given these (None: the run's defaults)."""
        sampler = sampler or self.opts.sampler
        if sampler not in ("ddpm", "ddim"):
            raise GenlabError(f"--sampler: {sampler!r} is not ddpm or ddim")
        return sampler, steps or (self.opts.sample_steps if sampler == "ddim" else self.schedule.timesteps)

    def settings(self, steps=None, sampler=None) -> dict:
        sampler, steps = self.sampling_steps(steps, sampler)
        return {"sampler": sampler, "steps": steps}

    def denoising(self, noise, y, seed, steps=None, sampler=None, guidance=None, progress=False) -> Iterator[torch.Tensor]:
        """The reverse process from `noise`, one x per step (the last is the image)."""
        sampler, steps = self.sampling_steps(steps, sampler)
        guidance = self.opts.guidance if guidance is None else guidance
        model = self.model

        def denoise(x, t):
            if y is None or guidance == 1.0:
                return model(x, t, y)
            null = torch.zeros_like(y) if y.is_floating_point() else torch.full_like(y, -1)  # no caption / no class
            both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))
            cond, uncond = both.chunk(2)
            return uncond + guidance * (cond - uncond)

        g = torch.Generator(device=self.device).manual_seed(seed)
        return denoising_steps(denoise, tuple(noise.shape), self.schedule, steps, sampler, self.config.model.prediction,
                               generator=g, device=self.device, clip=self.pixel_range, x_T=noise, progress=progress)

    def images(self, noise, y, seed, steps=None, sampler=None, guidance=None, progress=False, truncation=None):
        x = None
        for x in self.denoising(noise, y, seed, steps, sampler, guidance, progress):
            pass
        return x

    def frames(self, noise, y, seed, steps=None, sampler=None, guidance=None, frames=4):
        total = len(self.schedule.timesteps_for(self.sampling_steps(steps, sampler)[1]))
        for i, x in enumerate(self.denoising(noise, y, seed, steps, sampler, guidance), start=1):
            if i == total or i % max(1, total // frames) == 0:
                yield i, total, x


PIPELINES = {"gan": LatentPipeline, "vae": LatentPipeline, "autoregressive": AutoregressivePipeline,
             "diffusion": DiffusionPipeline}


def pipeline_for(family, model, config, device) -> ImagePipeline:
    """The pipeline a family's spec names (`sampler`)."""
    if family.sampler not in PIPELINES:
        raise GenlabError(f"model.name: family {family.name!r} names sampler {family.sampler!r}, which is not one of "
                          f"{', '.join(PIPELINES)}")
    return PIPELINES[family.sampler](model, config, device)
