"""What a caller may use of a generator (`genlab.load(RUN)`), declared once per kind, and the sampling
parameters every sequence request carries.

A generator is one of the Protocols below; the CLI, the server, compare, export and the benches use what its
Protocol declares and nothing under it (tests/test_generators.py fails on a module outside tasks/ that reaches
into a generator's `.model`, `.store` or `.tokenizer.tk`). `SamplingParams` holds every sampling field with its
default, once: a run's [sample] section, the CLI's flags, the Python API's keywords and the server's request
fields map onto it by name (a value left out keeps the run's own).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np


@dataclass
class SamplingParams:
    max_new_tokens: int = 200
    temperature: float = 0.8  # 0 = greedy (always the likeliest token)
    top_k: int = 50  # draw only from the k likeliest tokens; 0 = off
    top_p: float = 0.95  # draw only from the smallest set with this much probability; 1.0 = off
    repetition_penalty: float = 1.0  # 1.0 = off; >1 discourages tokens already present (Keskar et al. 2019)
    # OpenAI's penalties, on the tokens generated so far: logit -= frequency * count + presence * (count > 0)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, added to its logit), OpenAI's logit_bias
    logprobs: int | None = None  # report the drawn token's log-probability and this many likeliest alternatives
    logprobs_mode: str = "raw"  # "raw": the model's own distribution; "processed": after everything above
    max_time: float | None = None  # seconds of wall time from the request's start; then it ends ("time")

    @property
    def needs_history(self) -> bool:
        """Whether this row's logits depend on what came before it (no batched shortcut)."""
        return self.repetition_penalty != 1.0 or self.presence_penalty != 0.0 or self.frequency_penalty != 0.0


# The model's own distribution, unfiltered: what measurements of a model draw from (compare, export checks).
UNFILTERED = {"temperature": 1.0, "top_k": 0, "top_p": 1.0}


class Generator(Protocol):
    """What every generator has."""

    modality: str  # the task of its run: text, code, music, audio, image, clip
    config: object  # the run's resolved RunConfig
    run: object | None  # its run folder (genlab.core.runs.RunDir); None for an export or a Hugging Face model

    def evaluate(self, data: str | None = None, seed: int = 0, progress: bool = True) -> dict:
        """The numbers `genlab eval` prints and saves (held-out data: the run's, or `data`)."""


class SequenceGenerator(Generator, Protocol):
    """Text, code and music: token sequences decoded by the step engine (genlab.sampling.engine)."""

    vocab_size: int
    max_context: int | None  # the most tokens the model reads at once (None: any number)
    can_embed: bool

    def generate(self, prompt=None, n: int = 1, seed: int | None = None, stop: list[str] | None = None,
                 **params) -> list:
        """n samples continuing `prompt` (SamplingParams fields as keywords; the run's [sample] otherwise)."""

    def stream(self, prompt=None, seed: int | None = None, stop: list[str] | None = None, **params) -> Iterator[str]:
        """One sample as text pieces, each the moment it can no longer change."""

    def requests(self, prompt=None, n: int = 1, seed: int | None = None, stop: list[str] | None = None, **params) -> list:
        """n engine Requests (a server queues them on its own engine)."""

    def engine(self, use_cache: bool = True, text: bool = True, continuous: bool = False):
        """A step engine over the model (continuous: requests come and go, as in a server)."""

    def encode_prompt(self, prompt) -> list[int]: ...

    def describe(self, sample) -> str: ...

    def chat_prompt(self, messages: list[dict]) -> str | None:
        """A chat as a prompt in the model's own template (None: it has none)."""

    def score(self, ids: list[int], top: int):
        """A prompt's token log-probabilities (a generator of pieces, run between decoding steps)."""

    def embed(self, texts: list[list[int]]):
        """Mean last-layer states of token sequences (a generator of pieces)."""

    def compile_pattern(self, regex: str, timeout: float, memory_mb: int):
        """A constraint over this tokenizer's tokens that outputs must match."""

    def perplexity_of(self, tokens: np.ndarray) -> dict:
        """Loss, bits per unit and perplexity of the model over `tokens` (ids)."""

    def load_weights(self, path: Path) -> None:
        """Replace the weights in place with those of `path` (the run's own file, rewritten by training)."""

    @property
    def parameter_count(self) -> int: ...


class MusicGenerator(SequenceGenerator, Protocol):
    def generate(self, prime=None, n: int = 1, seed: int | None = None, seconds: float | None = None,
                 bars: int | None = None, max_new_tokens: int | None = None, **params) -> list: ...

    def prime_seconds(self, prime) -> float | None: ...


class AudioGenerator(SequenceGenerator, Protocol):
    sample_rate: int
    classes: list[str]

    def generate(self, prime=None, n: int = 1, seed: int | None = None, seconds: float | None = None,
                 max_new_tokens: int | None = None, class_label=None, **params) -> list: ...

    def save_sample(self, sample, stem: Path) -> list[Path]: ...


class ImageGenerator(Generator, Protocol):
    size: tuple[int, int]  # (width, height)
    classes: list[str]  # a class-conditional run's class names ([] for others)
    text_conditioned: bool

    def generate(self, n: int = 16, seed: int | None = None, class_label: int | None = None, steps: int | None = None,
                 sampler: str | None = None, guidance: float | None = None, progress: bool = False,
                 truncation: float | None = None, prompt=None) -> list: ...

    def generate_array(self, n: int = 16, seed: int | None = None, class_label: int | None = None, **options) -> np.ndarray: ...

    def grid_columns(self, n: int) -> int: ...

    def check_condition(self, class_label: int | None, prompt) -> None: ...

    def interpolate(self, seed_a: int, seed_b: int, frames: int = 8, class_label: int | None = None,
                    steps: int | None = None, guidance: float | None = None) -> np.ndarray: ...

    def style_mix(self, rows: int = 4, columns: int = 6, seed: int = 0, class_label: int | None = None,
                  truncation: float | None = None) -> np.ndarray: ...

    def trajectory(self, n: int = 4, seed: int | None = None, class_label: int | None = None, **options) -> Iterator: ...


class EmbeddingGenerator(Generator, Protocol):
    """Image and text in one space (clip runs, local CLIP and BLIP models)."""

    def embed_texts(self, texts: list[str]) -> np.ndarray: ...

    def embed_images(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray: ...

    def search(self, query: str, source: str | None = None, k: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def images_of(self, source: str | None, progress: bool = False) -> tuple[np.ndarray, np.ndarray | None, str]: ...
