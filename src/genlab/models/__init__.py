"""Model families, one file each. A family module defines a pydantic config
class (subclass of genlab.config.ModelConfig) and the model; FAMILIES maps a
name to "module:Class", imported only when used so that `genlab --help` stays fast.

Sequence families follow the protocol of docs/architecture.md:
    forward(idx (B, T)) -> logits (B, T, V)
    init_state(batch_size) -> state;  step(idx (B, T'), state) -> (logits (B, T', V), state)
"""

from __future__ import annotations

import importlib

from genlab.errors import GenlabError

FAMILIES: dict[str, str] = {
    "gpt": "genlab.models.gpt:GPT",
    "lstm": "genlab.models.rnn:RNN",
    "gru": "genlab.models.rnn:RNN",
    "rnn": "genlab.models.rnn:RNN",
    "fnet": "genlab.models.fnet:FNet",
    "ngram": "genlab.models.ngram:NGram",
    "wavenet": "genlab.models.wavenet:WaveNet",
    "gan": "genlab.models.gan:GAN",
    "dcgan": "genlab.models.dcgan:DCGAN",
    "vae": "genlab.models.vae:VAE",
    "ddpm": "genlab.models.unet:UNet",
    "pixelcnn": "genlab.models.pixelcnn:PixelCNN",
    "stylegan": "genlab.models.stylegan:StyleGAN",
    "clip": "genlab.models.clip:CLIP",
}

SEQUENCE_FAMILIES = ("gpt", "lstm", "gru", "rnn", "fnet", "ngram")
AUDIO_FAMILIES = ("wavenet",)  # sequences of mu-law samples (the audio task)
IMAGE_FAMILIES = ("gan", "dcgan", "stylegan", "vae", "ddpm", "pixelcnn")


def family_class(name: str):
    """The model class registered under `name`."""
    if name not in FAMILIES:
        raise GenlabError(f"model: unknown family {name!r} (known: {', '.join(FAMILIES)})")
    module, cls = FAMILIES[name].split(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as e:
        if e.name == module:
            raise GenlabError(f"model: family {name!r} is not available in this version of genlab") from None
        raise


def family_config(name: str):
    """The config class of family `name` (raises ValueError for pydantic to report)."""
    try:
        return family_class(name).Config
    except GenlabError as e:
        raise ValueError(str(e).removeprefix("model: ")) from None

