"""A CLIP-style dual encoder (Radford et al. 2021) at the scale of small images and short captions.

    image (B, C, H, W) -> conv stack (stride 2 per stage) -> global average -> linear -> L2-normalize -> (B, D)
    caption ids (B, L) -> char embedding + position -> n_layer transformer encoder (padding masked)
                      -> mean over the real characters -> linear -> L2-normalize -> (B, D)
    similarity = exp(logit_scale) * image_emb @ text_emb.T          (B, B); the diagonal holds the true pairs

logit_scale is learned (initialized to log(1/0.07) and capped at log(100), as CLIP does): it sets how
sharply the contrastive loss separates the true pair from the others.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from genlab.core.config import ModelConfig
from genlab.core.families import Family


class CLIPConfig(ModelConfig):
    name: Literal["clip"] = "clip"
    embed_dim: int = 64  # the shared space
    image_channels: int = 32  # feature maps of the first conv stage; doubled per stage
    image_stages: int = 2
    text_width: int = 64
    text_layers: int = 2
    text_heads: int = 4
    max_caption: int = 48  # characters of a caption the text encoder reads


class ImageEncoder(nn.Module):
    def __init__(self, cfg: CLIPConfig, channels: int):
        super().__init__()
        layers, ch = [nn.Conv2d(channels, cfg.image_channels, 3, padding=1), nn.GELU()], cfg.image_channels
        for _ in range(cfg.image_stages):
            layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1), nn.GroupNorm(8, ch * 2), nn.GELU()]
            ch *= 2
        self.net = nn.Sequential(*layers)
        self.proj = nn.Linear(ch, cfg.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.net(x).mean(dim=(2, 3)))  # (B, D)


class TextEncoder(nn.Module):
    def __init__(self, cfg: CLIPConfig, vocab_size: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.text_width, padding_idx=0)
        self.position = nn.Parameter(torch.zeros(cfg.max_caption, cfg.text_width))
        layer = nn.TransformerEncoderLayer(cfg.text_width, cfg.text_heads, 4 * cfg.text_width, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.text_layers, enable_nested_tensor=False)
        self.proj = nn.Linear(cfg.text_width, cfg.embed_dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, L), 0 = padding -> (B, D)."""
        pad = ids == 0
        h = self.blocks(self.embed(ids) + self.position[: ids.size(1)], src_key_padding_mask=pad)  # (B, L, W)
        keep = (~pad).unsqueeze(-1).float()
        return self.proj((h * keep).sum(1) / keep.sum(1).clamp(min=1))


class CLIP(nn.Module):
    Config = CLIPConfig

    def __init__(self, cfg: CLIPConfig, channels: int, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.image_encoder = ImageEncoder(cfg, channels)
        self.text_encoder = TextEncoder(cfg, vocab_size)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_images(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_encoder(x), dim=-1)

    def encode_texts(self, ids: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_encoder(ids), dim=-1)

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) and their captions (B, L) -> similarity logits (B images, B captions)."""
        scale = self.logit_scale.clamp(max=math.log(100)).exp()
        return scale * self.encode_images(x) @ self.encode_texts(ids).T


def contrastive_loss(logits: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE: each image must pick its caption among the batch's, and each caption its image.

    With `groups` (B,) (captions made from class labels), every pair of the same group is a true pair: two
    sevens in a batch are not each other's negatives, so the target spreads evenly over them."""
    if groups is None:
        target = torch.eye(logits.size(0), device=logits.device)
    else:
        target = (groups[:, None] == groups[None, :]).float()
    target = target / target.sum(1, keepdim=True)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


FAMILY = Family("clip", CLIP, "clip")
