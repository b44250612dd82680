"""Model families: one spec each, declared beside its model and listed here by name.

A family's module declares a `Family` (for example `FAMILY = Family("gpt", GPT, "sequence", ...)` at the end of
models/gpt.py): the model class (whose `Config` is the family's pydantic config), the kind of data it models,
how its samples are drawn, the formats it exports to and what else it can do. Tasks, the CLI, the server and
export ask the spec (`family(name)`), never the family's name.

Other packages add families without changing genlab: an entry point in the group `genlab.families` names a
`Family` object (docs/families.md walks through one). Built-in names win over a plugin's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from genlab.core.errors import GenlabError
from genlab.core.plugins import entries, load_entry

ENTRY_POINTS = "genlab.families"

# What data a family models, which is which task trains it ("sequence": text, code and music tokens).
KINDS = ("sequence", "audio", "image", "clip")
# How an image family draws its samples (sampling/image_pipelines.py has one pipeline per sampler).
SAMPLERS = ("diffusion", "gan", "vae", "autoregressive")
EXPORTS = ("onnx", "int8", "int8-torch", "hf", "web")


@dataclass(frozen=True)
class Family:
    name: str
    model: type  # an nn.Module class; `model.Config` is the family's config (a genlab.core.config.ModelConfig)
    kind: str  # one of KINDS
    sampler: str | None = None  # images: one of SAMPLERS
    exports: tuple[str, ...] = ()  # the formats of `genlab export` it supports (EXPORTS)
    train_defaults: dict = field(default_factory=dict)  # train.* values its runs start from (a config overrides them)
    # What else it can do, by name: "truncation", "style_mix" (style-based generators), "reconstruct" (an
    # encoder), "carry_state" (a recurrent state that may carry across training windows), "embed" (a sequence
    # model's `hidden(idx)`: last-layer states, for /v1/embeddings), "fit" (count-based: `fit(tokens)`, no
    # gradient training).
    abilities: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"family {self.name!r}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if (self.kind == "image") != (self.sampler is not None) or (self.sampler and self.sampler not in SAMPLERS):
            raise ValueError(f"family {self.name!r}: an image family names its sampler ({', '.join(SAMPLERS)}); others none")
        unknown = set(self.exports) - set(EXPORTS)
        if unknown:
            raise ValueError(f"family {self.name!r}: unknown export formats {sorted(unknown)}")

    def can(self, ability: str) -> bool:
        return ability in self.abilities


# name -> "module:attribute" of its Family, imported only when asked (so that `genlab --help` stays fast).
BUILTIN: dict[str, str] = {
    "gpt": "genlab.models.gpt:FAMILY",
    "lstm": "genlab.models.rnn:LSTM",
    "gru": "genlab.models.rnn:GRU",
    "rnn": "genlab.models.rnn:PLAIN_RNN",
    "fnet": "genlab.models.fnet:FAMILY",
    "ngram": "genlab.models.ngram:FAMILY",
    "wavenet": "genlab.models.wavenet:FAMILY",
    "gan": "genlab.models.gan:FAMILY",
    "dcgan": "genlab.models.dcgan:FAMILY",
    "stylegan": "genlab.models.stylegan:FAMILY",
    "vae": "genlab.models.vae:FAMILY",
    "ddpm": "genlab.models.unet:FAMILY",
    "pixelcnn": "genlab.models.pixelcnn:FAMILY",
    "clip": "genlab.models.clip:FAMILY",
}


@cache
def registry() -> dict[str, str]:
    """Every family name -> where its spec lives: genlab's own, then those of installed plugins."""
    return entries(BUILTIN, ENTRY_POINTS)


@cache
def family(name: str) -> Family:
    """The spec of family `name` (GenlabError naming the known ones when there is none)."""
    where = registry().get(name)
    if where is None:
        raise GenlabError(f"model: unknown family {name!r} (known: {', '.join(registry())})")
    spec = load_entry(where, "model", name)
    if not isinstance(spec, Family) or spec.name != name:
        raise GenlabError(f"model: {where} is not the Family spec of {name!r}")
    return spec


def names(kind: str | None = None) -> list[str]:
    """The families of one kind (all of them with None)."""
    return [n for n in registry() if kind is None or family(n).kind == kind]


def family_of(config) -> Family:
    """The spec of a run config's model."""
    return family(config.model.name)


def family_config(name: str):
    """The config class of family `name` (ValueError, for pydantic to report against the config's field)."""
    try:
        return family(name).model.Config
    except GenlabError as e:
        raise ValueError(str(e).removeprefix("model: ")) from None
