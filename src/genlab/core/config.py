"""Run configs: pydantic schemas, read from and written to TOML.

A config is built in layers: defaults, then `--config FILE.toml`, then the
named CLI flags (each maps to one field, see FLAG_FIELDS), then `--set
key=value`. Every section forbids unknown keys, so a typo is an error that
names the key. The model section is validated by the family it names: each
model file declares its own config class (see genlab.models).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator, model_validator

from genlab.core.errors import GenlabError
from genlab.core.families import family_config
from genlab.core.generators import SamplingParams
from genlab.tasks import task_names  # the registry of names only (the tasks' modules load on use)
from genlab.core.files import atomic_write_text, read_text_file


SAMPLING = SamplingParams()  # sampling defaults are set in one place: SamplingParams


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @classmethod
    def from_flags(cls, **values):
        """Built from command-line values: a bad one is a one-line GenlabError naming its flag (`--max-new-tokens`)."""
        try:
            return cls(**values)
        except ValidationError as e:
            first = e.errors()[0]
            flag = "--" + str(first["loc"][0]).replace("_", "-")
            raise GenlabError(f"{flag}: {first['msg'].removeprefix('Value error, ')}") from None


# Ranges every config value is checked against when a config is read (the message names the field).
Positive = Annotated[int, Field(gt=0)]
Count = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0, lt=1)]  # dropout and the like: 1 would drop everything


class ImageOptions(Section):
    """How images are decoded before training (issue: image generation)."""

    size: Positive | None = None  # resize to size x size; None keeps the dataset's size
    channels: Literal[1, 3] | None = None  # 1 grayscale, 3 RGB; None keeps the dataset's
    use_labels: bool = True  # class-conditional training where labels exist
    pixel_range: tuple[float, float] = (-1.0, 1.0)  # what uint8 0..255 maps to for the network
    grid_samples: Positive = 64  # images in the fixed-noise grid written at each eval
    sampler: Literal["ddpm", "ddim"] = "ddim"  # diffusion: default sampler for grids and `genlab sample`
    sample_steps: Positive = 50  # diffusion: default sampling steps (ddim); ddpm uses every step unless --steps
    guidance: NonNegative = 1.0  # diffusion: classifier-free guidance scale (1 = plain conditional)
    # A Hugging Face dataset (--data hf:FOLDER) or a table file (.parquet, .jsonl, .csv: image bytes or paths relative
    # to it): the column of its images, and of their labels (None: unlabelled).
    image_column: str = "image"
    label_column: str | None = None


class MusicOptions(Section):
    """How MIDI files become tokens (issue: music generation)."""

    tokenization: Literal["REMI", "MIDILike", "TSD", "Structured"] = "REMI"  # miditok tokenization
    transpose: Annotated[int, Field(ge=0, le=12)] = 0  # augment training windows with random shifts in [-transpose, +transpose] semitones (6 = all keys)
    programs: list[int] | None = None  # General MIDI programs to keep (-1 = drums); None keeps all
    use_programs: bool = False  # keep instruments apart (Program tokens); off merges kept tracks into one part
    use_velocities: bool = True  # off: every note at one loudness (a smaller vocabulary)


class AudioOptions(Section):
    """How sound files become samples (issue: sound and words)."""

    sample_rate: Positive = 16000  # every file is resampled (soxr) to this rate; stereo is averaged to mono
    bits: Annotated[int, Field(ge=2, le=16)] = 8  # mu-law levels = 2^bits (the vocabulary)
    condition: bool = False  # global conditioning: each file's class is the first subfolder it sits in
    max_seconds: PositiveFloat | None = None  # keep at most this much of each file (None: all of it)


class ClipOptions(Section):
    """Image-text pairs for the clip task (issue: image and text together)."""

    captions: str | None = None  # CSV or JSONL of image,caption (paths relative to the image folder); None: from labels


class CodeOptions(Section):
    """How a code base becomes a corpus (issue: code generation)."""

    extensions: list[str] = [".py"]
    respect_gitignore: bool = True
    dedupe: bool = True  # drop exact and near-duplicate files
    near_duplicate_threshold: Annotated[float, Field(gt=0, le=1)] = 0.85  # MinHash Jaccard estimate above which a file is a near duplicate


class DataConfig(Section):
    source: str = "python-docs"  # a file, a folder, or a named dataset (genlab.datasets)
    include: list[str] = []  # glob patterns a file in a folder must match (any); empty = all
    exclude: list[str] = []  # glob patterns that drop a file
    # Records (text, code): the column whose rows are the documents, of a .jsonl/.parquet/.csv file or of a
    # Hugging Face dataset (`--data hf:PATH_OR_NAME`, where it defaults to "text"), and the dataset's split.
    column: str | None = None
    dataset_split: str = "train"
    val_fraction: float = 0.1
    test_fraction: float = 0.0
    # random-chunks: val (and test) are seeded random chunks of split_chunk tokens from the whole corpus;
    # tail: the corpus cut in order, val at the end, as nanoGPT and char-rnn split (for comparable numbers).
    split: Literal["random-chunks", "tail"] = "random-chunks"
    split_chunk: Positive = 1024  # tokens per chunk when splitting by seed
    # Processes that tokenize the corpus (the same store whatever the number); None: every core for a corpus past
    # a few megabytes, else one.
    tokenize_workers: Positive | None = None
    image: ImageOptions = ImageOptions()
    music: MusicOptions = MusicOptions()
    audio: AudioOptions = AudioOptions()
    clip: ClipOptions = ClipOptions()
    code: CodeOptions = CodeOptions()

    @field_validator("val_fraction", "test_fraction")
    @classmethod
    def _fraction(cls, v: float) -> float:
        if not 0.0 <= v < 1.0:
            raise ValueError("must be in [0, 1)")
        return v


class TokenizerConfig(Section):
    kind: str = "char"  # char | bpe | word (| code | midi, added by their modalities)
    vocab_size: Annotated[int, Field(ge=2)] = 4096  # BPE and word only
    min_frequency: Positive = 2  # BPE and word only: rarer pieces are not in the vocabulary


class ModelConfig(Section):
    """Base of every family's config; `name` picks the family (genlab.core.families).

    Every whole number in a family's config is a size or a count (positive), and every field named
    `dropout` or `p_*` is a probability in [0, 1); families add their own checks."""

    name: str

    def label(self) -> str:
        """The model as tables and plots name it (a family with variants says which)."""
        return self.name

    @field_validator("*")
    @classmethod
    def _in_range(cls, v: Any, info) -> Any:
        values = v if isinstance(v, list) else [v]
        if any(isinstance(x, int) and not isinstance(x, bool) and x <= 0 for x in values):
            raise ValueError("must be positive")
        name = info.field_name
        if (name == "dropout" or name.startswith("p_")) and not 0 <= v < 1:
            raise ValueError("must be in [0, 1)")
        if isinstance(v, float) and v < 0:
            raise ValueError("must not be negative")
        return v


class TrainConfig(Section):
    max_steps: Positive = 2000
    max_time: PositiveFloat | None = None  # seconds of training; stops early (and checkpoints) when reached
    batch_size: Positive = 32
    grad_accum: Positive = 1
    lr: PositiveFloat = 1e-3
    min_lr_ratio: Annotated[float, Field(ge=0, le=1)] = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: Count = 100
    weight_decay: NonNegative = 0.1
    beta1: Probability = 0.9
    beta2: Probability = 0.99
    grad_clip: NonNegative = 1.0  # 0 disables
    # bfloat16 = autocast; auto = bfloat16 on a CUDA GPU that has it, float32 on CPU (where bf16 autocast
    # measured slower: BENCHMARKS.md)
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Under torchrun: every rank holds the whole model and gradients are averaged ("ddp"), or each holds a
    # 1/N shard of the parameters, gradients and optimizer state ("fsdp": for models too big for one device).
    shard: Literal["ddp", "fsdp"] = "ddp"
    seed: int = 1337
    eval_interval: Positive = 250
    eval_batches: Positive = 20  # batches per periodic eval; `genlab eval` uses the whole split
    log_interval: Positive = 10
    checkpoint_interval: Positive = 250
    ema_decay: Probability | None = None
    # model.safetensors holds the weights with the best val loss seen ("best"; EMA weights where EMA is on), or
    # the last ones ("last"); checkpoint/ always holds the latest state, for exact resume.
    keep: Literal["best", "last"] = "best"
    patience: Positive | None = None  # stop after this many evals without a better val loss (None: never)
    sample_tokens: Count = 200  # length of the samples written at each eval
    compile: bool = False  # torch.compile the training forward (text, code, music): slower start, faster steps
    threads: int | Literal["auto"] | None = None  # CPU threads; None leaves torch's setting (the CLI passes auto)
    # RNNs: carry the hidden state from each training window to the next one of the same stream (truncated
    # backprop through time, as char-rnn), instead of starting every random window from zeros.
    carry_state: bool = False
    progress: bool = True
    init_from: str | None = None  # a run directory to fine-tune: its weights and tokenizer are the start
    # Experiment trackers that get every scalar, each eval's samples and the config, beside metrics.jsonl:
    # "tensorboard" (RUN/tensorboard), "mlflow" ($MLFLOW_TRACKING_URI, else a store beside the run folder).
    log: list[Literal["tensorboard", "mlflow"]] = []


class SampleConfig(Section):
    """How `genlab sample` (and the server) sample this run unless told otherwise: genlab.core.generators.SamplingParams
    fields, starting from its defaults."""

    prompt: str = ""
    max_new_tokens: Count = SAMPLING.max_new_tokens
    temperature: NonNegative = SAMPLING.temperature
    top_k: Count = SAMPLING.top_k
    top_p: Annotated[float, Field(gt=0, le=1)] = SAMPLING.top_p
    repetition_penalty: PositiveFloat = SAMPLING.repetition_penalty


class DistillConfig(Section):
    """Knowledge distillation from a teacher run (`genlab distill`; objectives/kd.py)."""

    teacher: str | None = None  # a finished run of the same task: its tokenizer becomes the student's
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.5  # weight of the data's cross-entropy; 1 - alpha on the teacher's soft targets
    temperature: PositiveFloat = 2.0  # softens both distributions in the KL term (scaled back by T^2)
    adv_weight: NonNegative = 0.0  # weight of the adversarial critic's signal (0: no critic, plain distillation)
    cache_topk: Positive | None = None  # cache the teacher's k largest logits per training token once, then train without it


# The model a task trains when the config names none (`genlab train text` with no --model).
DEFAULT_MODEL = {"text": "gpt", "code": "gpt", "music": "gpt", "audio": "wavenet", "image": "ddpm", "clip": "clip"}


class RunConfig(Section):
    task: str = "text"  # a task of genlab.tasks: text, code, music, audio, image, clip, or a plugin's
    out: str = "runs/latest"
    data: DataConfig = DataConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    model: SerializeAsAny[ModelConfig] = {"name": "gpt"}  # type: ignore[assignment]
    train: TrainConfig = TrainConfig()
    sample: SampleConfig = SampleConfig()
    distill: DistillConfig = DistillConfig()

    @model_validator(mode="before")
    @classmethod
    def _default_model(cls, tree: Any) -> Any:
        if isinstance(tree, dict):
            model = tree.get("model", {})
            if isinstance(model, dict) and "name" not in model:
                task = tree.get("task", "text")
                tree = {**tree, "model": {"name": DEFAULT_MODEL.get(task, "gpt"), **model}}
        return tree

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        known = task_names()
        if v not in known:
            raise ValueError(f"unknown task {v!r} (known: {', '.join(known)})")
        return v

    @field_validator("model", mode="before")
    @classmethod
    def _family_config(cls, v: Any) -> ModelConfig:
        if isinstance(v, ModelConfig):
            return v
        if not isinstance(v, dict):
            raise ValueError("must be a table with a `name` (the model family)")
        return family_config(v["name"]).model_validate(v)


def validate_sample_options(**options) -> None:
    """Range-check sampling options given on the command line (None = the run's own), naming `sample.<field>`."""
    given = {k: v for k, v in options.items() if v is not None}
    try:
        SampleConfig.model_validate(given)
    except ValidationError as e:
        first = e.errors()[0]
        raise GenlabError(f"sample.{first['loc'][0]}: {first['msg']}") from None


# CLI flag -> dotted config field. Every named train flag is one of these.
FLAG_FIELDS = {
    "data": "data.source",
    "model": "model.name",
    "tokenizer": "tokenizer.kind",
    "out": "out",
    "max_steps": "train.max_steps",
    "max_time": "train.max_time",
    "batch_size": "train.batch_size",
    "lr": "train.lr",
    "device": "train.device",
    "seed": "train.seed",
    "compile": "train.compile",
    "log": "train.log",
}


def _set_dotted(tree: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise GenlabError(f"--set {key}: `{part}` is a value, not a section")
        node = child
    node[parts[-1]] = value


def parse_set(item: str) -> tuple[str, Any]:
    """`key=value` -> (key, value); the value is read as TOML (numbers, bools, lists), else kept as a string."""
    if "=" not in item:
        raise GenlabError(f"--set {item!r}: expected key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        value = raw
    return key, value


def read_toml(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise GenlabError(f"{path}: no such config file")
    try:
        return tomllib.loads(read_text_file(path))
    except (tomllib.TOMLDecodeError, RecursionError) as e:  # RecursionError: arrays nested thousands deep
        raise GenlabError(f"{path}: not valid TOML ({e})") from None


def did_you_mean(loc: tuple, tree: dict) -> str:
    """' (did you mean train.max_steps?)' for an unknown key close to a real one of its section, else ''."""
    import difflib

    section: type[BaseModel] = RunConfig
    for part in loc[:-1]:
        field = section.model_fields.get(str(part))
        kind = getattr(field, "annotation", None)
        if part == "model" and section is RunConfig:  # the family's own config
            try:
                kind = family_config(tree.get("model", {}).get("name") or DEFAULT_MODEL.get(tree.get("task", "text"), "gpt"))
            except (ValueError, AttributeError):
                return ""
        if not (isinstance(kind, type) and issubclass(kind, BaseModel)):
            return ""
        section = kind
    close = difflib.get_close_matches(str(loc[-1]), list(section.model_fields), n=1, cutoff=0.6)
    return f" (did you mean {'.'.join([*map(str, loc[:-1]), close[0]])}?)" if close else ""


def _describe(e: ValidationError, origin: str, tree: dict) -> str:
    first = e.errors()[0]
    loc = tuple(p for p in first["loc"] if not str(p).startswith("function-"))
    where = ".".join(map(str, loc))
    msg = "unknown key" + did_you_mean(loc, tree) if first["type"] == "extra_forbidden" else first["msg"].removeprefix("Value error, ")
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"{origin}: {where}: {msg}{more}"


def build_config(
    config_file: Path | None = None,
    flags: dict[str, Any] | None = None,
    sets: list[str] | None = None,
    base: dict | None = None,
) -> RunConfig:
    """Layer defaults < `base` < config file < named flags < `--set` items into a RunConfig."""
    tree: dict = dict(base or {})
    origin = "config"
    if config_file is not None:
        tree = _merge(tree, read_toml(config_file))
        origin = str(config_file)
    for flag, value in (flags or {}).items():
        if value is not None:
            _set_dotted(tree, FLAG_FIELDS[flag], value)
    for item in sets or []:
        _set_dotted(tree, *parse_set(item))
    return validate_config(tree, origin)


def validate_config(tree: dict, origin: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as e:
        raise GenlabError(_describe(e, origin, tree if isinstance(tree, dict) else {})) from None


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def config_to_toml(config: RunConfig) -> str:
    # TOML has no null: every field whose default is None is simply left out.
    return tomli_w.dumps(config.model_dump(exclude_none=True))


def save_config(config: RunConfig, path: Path) -> None:
    atomic_write_text(path, config_to_toml(config))


def load_config(path: Path) -> RunConfig:
    return validate_config(read_toml(path), str(path))
