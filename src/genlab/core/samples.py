"""What a Generator returns: one typed sample per row, whatever the modality.

`generate(...)` returns a list of these, always a list (n == 1 included); the CLI and the server decide
how to show or write them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class TextSample:
    text: str  # the generated text, prompt not included (as OpenAI's API returns it), cut before the stop string
    tokens: list[int] = field(default_factory=list)  # the generated token ids
    finish_reason: str = "length"  # "length" (max_new_tokens), "stop" (a stop string or end of text), "time" (max_time), "cancelled"
    prompt: str = ""  # the text it continues

    @property
    def full_text(self) -> str:
        """The prompt and its continuation: what `genlab sample` prints."""
        return self.prompt + self.text


@dataclass
class ImageSample:
    pixels: np.ndarray  # (H, W, C) uint8
    seed: int  # the noise it was drawn from
    label: int | None = None  # its class, for class-conditional runs

    def image(self):
        """The sample as a PIL image."""
        from PIL import Image

        return Image.fromarray(self.pixels[..., 0] if self.pixels.shape[-1] == 1 else self.pixels)


@dataclass
class MusicSample:
    score: object  # symusic Score in ticks: the prime as the tokenizer renders it, then the new music
    tokens: list[int] = field(default_factory=list)  # the generated token ids
    finish_reason: str = "length"  # "length" (the asked seconds/bars/tokens), "cap" (the token cap came first) or "time" (max_time)


@dataclass
class AudioSample:
    audio: object  # float32 numpy array (N,) in [-1, 1]: the prime, then the generated continuation
    sample_rate: int
    prime_samples: int = 0  # how many of the first samples are the prime
    finish_reason: str = "length"
