"""A style-based generator (Karras et al. 2019, StyleGAN; 2020, StyleGAN2) at the scale a CPU allows.

    mapping:    z (B, latent) [+ label emb] -> pixel norm -> mapping_layers x [linear, lrelu] -> w (B, latent)
    synthesis:  learned constant (C, s, s)
                -> per resolution s, 2s, ..., side:  [upsample x2] -> 2 x [modulated 3x3 conv (style w_i) -> + noise_i
                   -> + bias -> lrelu]  and a toRGB (modulated 1x1, no demodulation) added to the upsampled image so far
    discriminator: image -> conv blocks, avg-pool down -> minibatch stddev -> conv -> linear -> logit [+ projection of the label]

Modulation scales the convolution's input channels by the style s = A(w); demodulation divides each output
channel by the norm of its modulated weights, so activations stay at unit scale without normalizing the
data (StyleGAN2's answer to StyleGAN's "droplet" artifacts). Every synthesis layer reads its own w: style
mixing regularization feeds two w's split at a random layer during training, so neighbouring layers do not
learn to depend on each other, and `style_mix` uses the same split to put one image's coarse styles
(pose, stroke) on another's fine ones. The truncation trick moves w towards the average w seen in training,
w' = w_avg + psi (w - w_avg): less variety, fewer failures. Noise is random in training and fixed buffers
when generating, so a seed fixes an image.

Every weight has an equalized learning rate (Karras et al. 2018): stored at unit scale and multiplied by its He
constant at each forward, so that Adam, whose steps are of a size set by the learning rate alone, moves every
layer at the same relative pace. The mapping network learns 100 times more slowly still (`mapping_lr_mul`, as
StyleGAN's 0.01): at the full rate its w's drift together and the generator collapses onto a few images.

Pretrained StyleGAN releases are Python pickles; genlab does not unpickle files, so it does not load them.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import field_validator

from genlab.core.config import ModelConfig
from genlab.core.families import Family
from genlab.models.dcgan import check_square
from genlab.models.gan import to_pixel_range
from genlab.objectives.augment import parse_policy


class StyleGANConfig(ModelConfig):
    name: Literal["stylegan"] = "stylegan"
    latent_dim: int = 64  # z and w
    mapping_layers: int = 4
    mapping_lr_mul: float = 0.01  # the mapping network's learning rate, relative to the rest
    channels: int = 32  # feature maps at every resolution
    n_layers: int = 2  # doublings from the constant to the image side (28 -> a 7x7 constant)
    label_dim: int = 16
    p_style_mix: float = 0.9  # chance a training batch mixes two w's
    r1_gamma: float = 1.0  # weight of the R1 penalty on the discriminator's gradient at real images
    r1_interval: int = 4  # lazy R1: the penalty (times this) every this many steps
    pl_weight: float = 0.0  # path-length regularization (StyleGAN2 uses 2; off by default: see BENCHMARKS.md)
    pl_interval: int = 4  # lazy, as R1
    augment: str = ""  # DiffAugment for small data sets: any of "color,translation,cutout" (objectives/augment.py)
    w_avg_decay: float = 0.995  # how fast the average w (for truncation) follows training
    loss: Literal["non-saturating", "hinge"] = "non-saturating"

    @field_validator("augment")
    @classmethod
    def _known_policy(cls, text: str) -> str:
        parse_policy(text)  # a ValueError names the unknown one
        return text


class EqualLinear(nn.Module):
    """A linear layer with an equalized learning rate: weights N(0, 1) / lr_mul, scaled by lr_mul / sqrt(in)."""

    def __init__(self, in_features: int, out_features: int, bias_init: float = 0.0, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), bias_init / lr_mul))
        self.scale, self.lr_mul = lr_mul / math.sqrt(in_features), lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class EqualConv2d(nn.Module):
    """A convolution with an equalized learning rate: weights N(0, 1), scaled by 1 / sqrt(in * k * k)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.scale, self.padding = 1 / math.sqrt(in_ch * kernel * kernel), kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class ModulatedConv(nn.Module):
    """A k x k convolution whose input channels are scaled per image by a style from w (and, with `demodulate`,
    each output channel rescaled to unit norm)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, latent_dim: int, demodulate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))  # equalized: scaled at each forward
        self.scale = 1 / math.sqrt(in_ch * kernel * kernel)
        self.style = EqualLinear(latent_dim, in_ch, bias_init=1.0)  # starts as an unmodulated convolution
        self.demodulate, self.padding = demodulate, kernel // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """x (B, in, H, W), w (B, latent) -> (B, out, H, W)."""
        B, C, H, W = x.shape
        s = self.style(w)  # (B, in)
        weight = self.weight[None] * self.scale * s[:, None, :, None, None]  # (B, out, in, k, k)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        # One grouped convolution: each image of the batch is a group with its own weights (on a CPU faster than
        # scaling the input and convolving the batch at once: 20 against 27 ms a step at 32 x 32 channels, 28 x 28).
        out = F.conv2d(x.reshape(1, B * C, H, W), weight.reshape(-1, C, *weight.shape[3:]), padding=self.padding, groups=B)
        return out.reshape(B, -1, H, W)


class StyleLayer(nn.Module):
    """Modulated 3x3 conv -> + scaled noise -> + bias -> leaky ReLU."""

    def __init__(self, in_ch: int, out_ch: int, latent_dim: int, side: int):
        super().__init__()
        self.conv = ModulatedConv(in_ch, out_ch, 3, latent_dim)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.register_buffer("fixed_noise", torch.randn(1, 1, side, side))  # the noise of generation
        self.bias = nn.Parameter(torch.zeros(out_ch))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = self.conv(x, w)
        noise = torch.randn_like(x[:, :1]) if self.training else self.fixed_noise
        return F.leaky_relu(x + self.noise_strength * noise + self.bias[:, None, None], 0.2)


class Synthesis(nn.Module):
    def __init__(self, cfg: StyleGANConfig, shape, pixel_range):
        super().__init__()
        c_img, side = shape[0], check_square(shape, cfg.n_layers, "stylegan")
        C, start = cfg.channels, side // 2 ** cfg.n_layers
        self.pixel_range = pixel_range
        self.const = nn.Parameter(torch.randn(1, C, start, start))
        self.blocks = nn.ModuleList()
        self.to_rgb = nn.ModuleList()
        for level in range(cfg.n_layers + 1):
            s = start * 2 ** level
            self.blocks.append(nn.ModuleList([StyleLayer(C, C, cfg.latent_dim, s) for _ in range(1 if level == 0 else 2)]))
            self.to_rgb.append(ModulatedConv(C, c_img, 1, cfg.latent_dim, demodulate=False))
        self.num_ws = sum(len(b) for b in self.blocks) + 1  # one w per conv, and one for the last toRGB

    def forward(self, ws: torch.Tensor) -> torch.Tensor:
        """ws (B, num_ws, latent): the style of every layer -> images (B, C, H, W) in the pixel range."""
        x = self.const.expand(ws.size(0), -1, -1, -1)
        rgb, i = None, 0
        for level, (block, to_rgb) in enumerate(zip(self.blocks, self.to_rgb)):
            if level:
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
                rgb = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False)
            for layer in block:
                x = layer(x, ws[:, i])
                i += 1
            # toRGB reads the style of the layer after it (the next block's first), the last one its own
            out = to_rgb(x, ws[:, min(i, ws.size(1) - 1)])
            rgb = out if rgb is None else rgb + out
        return to_pixel_range(torch.tanh(rgb), self.pixel_range)


class Generator(nn.Module):
    def __init__(self, cfg: StyleGANConfig, shape, num_classes: int, pixel_range):
        super().__init__()
        self.cfg = cfg
        self.label = nn.Embedding(num_classes, cfg.label_dim) if num_classes else None
        width = cfg.latent_dim + (cfg.label_dim if num_classes else 0)
        layers = []
        for i in range(cfg.mapping_layers):
            layers += [EqualLinear(width if i == 0 else cfg.latent_dim, cfg.latent_dim, lr_mul=cfg.mapping_lr_mul),
                       nn.LeakyReLU(0.2)]
        self.mapping = nn.Sequential(*layers)
        self.synthesis = Synthesis(cfg, shape, pixel_range)
        self.register_buffer("w_avg", torch.zeros(cfg.latent_dim))

    def map(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """z (B, latent) -> w (B, latent); training also moves the running average of w."""
        z = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)  # pixel norm: z on a sphere
        if self.label is not None and y is not None:
            z = torch.cat([z, self.label(y)], dim=1)
        w = self.mapping(z)
        if self.training:
            with torch.no_grad():
                self.w_avg.lerp_(w.mean(0), 1 - self.cfg.w_avg_decay)
        return w

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Training: z (B, latent) -> images, two w's mixed at a random layer with probability p_style_mix."""
        w = self.map(z, y)
        ws = w[:, None].expand(-1, self.synthesis.num_ws, -1)
        # torch's generator, not Python's: it is part of the checkpoint, so a resumed run mixes the same way
        if self.training and float(torch.rand(())) < self.cfg.p_style_mix:
            other = self.map(torch.randn_like(z), y)
            cut = int(torch.randint(1, self.synthesis.num_ws, ()))
            ws = torch.cat([ws[:, :cut], other[:, None].expand(-1, self.synthesis.num_ws - cut, -1)], dim=1)
        return self.synthesis(ws)


class MinibatchStd(nn.Module):
    """Appends the mean standard deviation over a group of images as one more feature map: a batch of identical
    fakes then looks different from a batch of varied reals (a cheap guard against mode collapse)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        group = math.gcd(B, 4)
        # sqrt(var + eps), not std(): where every image of a group agrees (MNIST's black border) the gradient
        # of std is 0/0, and R1's second derivative would turn it into NaN.
        std = (x.reshape(group, -1, *x.shape[1:]).var(0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (B / group,)
        return torch.cat([x, std.repeat(group)[:, None, None, None].expand(B, 1, H, W)], dim=1)


class Discriminator(nn.Module):
    def __init__(self, cfg: StyleGANConfig, shape, num_classes: int):
        super().__init__()
        c_img, side = shape[0], check_square(shape, cfg.n_layers, "stylegan")
        C = cfg.channels
        layers = [EqualConv2d(c_img, C, 1), nn.LeakyReLU(0.2)]
        for _ in range(cfg.n_layers):
            layers += [EqualConv2d(C, C, 3), nn.LeakyReLU(0.2), nn.AvgPool2d(2)]
        self.net = nn.Sequential(*layers, MinibatchStd(), EqualConv2d(C + 1, C, 3), nn.LeakyReLU(0.2), nn.Flatten())
        features = C * (side // 2 ** cfg.n_layers) ** 2
        self.head = EqualLinear(features, 1)
        self.label = nn.Embedding(num_classes, features) if num_classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.net(x)  # (B, features)
        logit = self.head(h).squeeze(1)
        if self.label is not None and y is not None:
            logit = logit + (self.label(y) * h).sum(1)  # projection discriminator
        return logit


# What a run of this family trains with unless its config says otherwise.
# The generator samples (and is judged by FID) through an average of its weights, half of it renewed about every
# 10,000 images (StyleGAN's G_ema): at 2 minutes on digits it halved FID (22.8 -> 9.3-10.0) and raised recall.
TRAIN_DEFAULTS = {"lr": 2e-3, "beta1": 0.0, "beta2": 0.99, "weight_decay": 0.0, "warmup_steps": 0,
                  "min_lr_ratio": 1.0, "grad_clip": 0.0, "batch_size": 32, "ema_decay": 0.998}


class StyleGAN(nn.Module):
    """Generator and discriminator; `generate(z, y, truncation)` makes images, `style_mix` the mixing grid."""

    Config = StyleGANConfig

    def __init__(self, cfg: StyleGANConfig, shape: tuple[int, int, int], num_classes: int = 0, pixel_range=(-1.0, 1.0)):
        super().__init__()
        self.config, self.latent_dim, self.num_classes = cfg, cfg.latent_dim, num_classes
        self.generator = Generator(cfg, shape, num_classes, tuple(pixel_range))
        self.discriminator = Discriminator(cfg, shape, num_classes)
        self.r1_gamma = cfg.r1_gamma

    def path_lengths(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, latent) -> (B,): how far each image moves for a unit step in its w's, |J_w^T u| for image-sized
        noise u of unit variance per image (StyleGAN2's path length), in the graph so it can be penalized."""
        ws = self.generator.map(z, y)[:, None].repeat(1, self.generator.synthesis.num_ws, 1)  # (B, num_ws, latent)
        images = self.generator.synthesis(ws)
        noise = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
        (grad,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True)
        return grad.pow(2).sum(2).mean(1).sqrt()

    def styles(self, z: torch.Tensor, y: torch.Tensor | None, truncation: float = 1.0) -> torch.Tensor:
        """z (B, latent) -> w (B, latent), pulled towards the average w by `truncation` < 1."""
        w = self.generator.map(z, y)
        return self.generator.w_avg + truncation * (w - self.generator.w_avg)

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None, truncation: float = 1.0) -> torch.Tensor:
        """z (B, latent_dim), y (B,) class ids -> images (B, C, H, W) in the pixel range (no mixing, fixed noise)."""
        w = self.styles(z, y, truncation)
        return self.generator.synthesis(w[:, None].expand(-1, self.generator.synthesis.num_ws, -1))

    def style_mix(self, z_rows: torch.Tensor, z_cols: torch.Tensor, y_rows=None, y_cols=None, truncation: float = 1.0,
                  coarse_layers: int | None = None) -> torch.Tensor:
        """(R + C) latents -> (R, C, ...) images: cell (r, c) takes the first `coarse_layers` styles (the low
        resolutions: shape, stroke) from row r's latent and the rest (fine detail, texture) from column c's."""
        n = self.generator.synthesis.num_ws
        cut = coarse_layers if coarse_layers is not None else max(1, n // 2)
        w_rows, w_cols = self.styles(z_rows, y_rows, truncation), self.styles(z_cols, y_cols, truncation)
        R, Cn = len(w_rows), len(w_cols)
        coarse = w_rows[:, None, None].expand(R, Cn, cut, -1)
        fine = w_cols[None, :, None].expand(R, Cn, n - cut, -1)
        ws = torch.cat([coarse, fine], dim=2).reshape(R * Cn, n, -1)
        images = self.generator.synthesis(ws)  # (R * C, channels, H, W)
        return images.reshape(R, Cn, *images.shape[1:])


FAMILY = Family("stylegan", StyleGAN, "image", sampler="gan", train_defaults=TRAIN_DEFAULTS,
                abilities=frozenset({"truncation", "style_mix"}))
