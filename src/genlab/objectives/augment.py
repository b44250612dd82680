"""Differentiable augmentation for GANs on small data sets (DiffAugment, Zhao et al. 2020).

A discriminator trained on a few thousand images memorizes them, and the generator it teaches collapses.
Augmenting what the discriminator sees stops that, but only if real and generated images are augmented
alike, in both players' steps, and by operations the generator's gradient can pass through: then the
generator cannot learn to produce the augmentations themselves (the leak ADA and DiffAugment guard against).

    policy "color":        brightness (+-0.5), saturation (x0..2), contrast (x0.5..1.5), per image
    policy "translation":  a shift by up to 1/8 of the side, filled with the background (zeros)
    policy "cutout":       a square of half the side set to zeros, at a random place per image

Images are (B, C, H, W) in the pixel range, centred at 0 ([-1, 1]).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


def parse_policy(text: str) -> tuple[str, ...]:
    """'color,translation' -> ('color', 'translation'); '' -> () (no augmentation)."""
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown augmentation {unknown[0]!r}; choose from {', '.join(POLICIES)}")
    return names


def diff_augment(x: torch.Tensor, policy: tuple[str, ...]) -> torch.Tensor:
    """x (B, C, H, W) -> the same shape, each image augmented by its own draw of every operation in `policy`."""
    for name in policy:
        x = OPERATIONS[name](x)
    return x


def color(x: torch.Tensor) -> torch.Tensor:
    B = x.size(0)
    x = x + (torch.rand(B, 1, 1, 1, device=x.device) - 0.5)  # brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (torch.rand(B, 1, 1, 1, device=x.device) * 2) + mean  # saturation (none for one channel)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(B, 1, 1, 1, device=x.device) + 0.5) + mean  # contrast


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Each image shifted by whole pixels (dy, dx) in [-side/8, side/8], by gathering from a zero-padded copy."""
    B, _, H, W = x.shape
    sy, sx = max(1, int(H * ratio + 0.5)), max(1, int(W * ratio + 0.5))
    dy = torch.randint(-sy, sy + 1, (B, 1, 1), device=x.device)
    dx = torch.randint(-sx, sx + 1, (B, 1, 1), device=x.device)
    rows = (torch.arange(H, device=x.device)[None, :, None] + dy + sy).expand(B, H, W)  # (B, H, W) into the padded copy
    cols = (torch.arange(W, device=x.device)[None, None, :] + dx + sx).expand(B, H, W)
    padded = F.pad(x, (sx, sx, sy, sy))  # (B, C, H + 2sy, W + 2sx)
    flat = padded.flatten(2)  # (B, C, (H + 2sy)(W + 2sx))
    index = (rows * (W + 2 * sx) + cols).flatten(1)[:, None].expand(-1, x.size(1), -1)  # (B, C, H * W)
    return flat.gather(2, index).view_as(x)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """A (side/2)-square of each image set to zeros (its centre anywhere in the image, the square clipped)."""
    B, _, H, W = x.shape
    h, w = int(H * ratio + 0.5), int(W * ratio + 0.5)
    cy = torch.randint(0, H + (1 - h % 2), (B, 1, 1), device=x.device)
    cx = torch.randint(0, W + (1 - w % 2), (B, 1, 1), device=x.device)
    oy = torch.arange(H, device=x.device)[None, :, None] - cy + h // 2  # (B, H, 1): row within the square
    ox = torch.arange(W, device=x.device)[None, None, :] - cx + w // 2  # (B, 1, W)
    inside = (oy >= 0) & (oy < h) & (ox >= 0) & (ox < w)  # (B, H, W)
    return x * (~inside)[:, None].to(x.dtype)


OPERATIONS = {"color": color, "translation": translation, "cutout": cutout}
