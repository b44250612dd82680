"""Image grids: many (H, W, C) uint8 images as one picture, written as PNG."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from genlab.core.files import atomic_write_bytes


def make_grid(images: np.ndarray, columns: int, pad: int = 2, min_tile: int = 32):
    """(N, H, W, C) uint8 -> one PIL image: tiles in rows of `columns`, small images enlarged (nearest) to min_tile."""
    from PIL import Image

    n, h, w, c = images.shape
    scale = max(1, math.ceil(min_tile / max(h, w)))
    if scale > 1:
        images = images.repeat(scale, axis=1).repeat(scale, axis=2)
        h, w = h * scale, w * scale
    rows = math.ceil(n / columns)
    canvas = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        r, col = divmod(i, columns)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = img
    return Image.fromarray(canvas[..., 0] if c == 1 else canvas)


def save_png(image, path: Path) -> None:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    atomic_write_bytes(Path(path), buf.getvalue())
