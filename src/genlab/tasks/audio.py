"""Audio: sound files in, raw waveforms out, one mu-law sample at a time, on the sequence stack.

    WAV/FLAC folder or `bach-audio` -> mono at data.audio.sample_rate -> MuLawTokenizer (2^bits levels)
      -> token store -> WaveNet (genlab.models.wavenet) -> LM objective -> Trainer
    run -> AudioGenerator: continue a prime (or start from silence) for N seconds -> .wav + spectrogram .png

A sample is a token, so the sequence stack's loss in bits per token is bits
per sample. With `data.audio.condition`, each file's class is the subfolder
it sits in: a second token store holds one label per sample, split exactly
as the sounds are (same lengths, seed and chunks), and each training window
is conditioned on the class most of its samples belong to.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

from genlab.core import cancel
from genlab.core.config import DataConfig, RunConfig
from genlab.core.errors import GenlabError
from genlab.core.families import family, names
from genlab.core.progress import progress_bar
from genlab.core.runs import RunDir
from genlab.core.samples import AudioSample
from genlab.datasets import resolve_source
from genlab.datasets.audio import AUDIO_PATTERNS, class_of, read_audio, usable_audio_files
from genlab.datasets.token_store import TokenStore, WindowSampler, eval_windows
from genlab.media.audio import write_audio
from genlab.models.wavenet import Conditioned
from genlab.objectives.lm import LanguageModeling, token_losses
from genlab.sampling.engine import Engine
from genlab.tasks.driver import Training
from genlab.tasks.sequence import MAX_PRIME_SECONDS, SequenceGenerator, SequenceTask, evaluate_tokens

DEFAULT_DATA = "bach-audio"
# What an audio run changes from the text defaults when the user leaves them unset: windows of thousands of
# samples make a batch of 8 as large as a text batch of 256; a sample written at each eval lasts half a second.
TRAIN_DEFAULTS = {"batch_size": 8, "sample_tokens": 8000, "eval_batches": 8}
# WaveNet samples from the full distribution: truncating it (top-k/top-p) turns sound into clicks.
SAMPLE_DEFAULTS = {"temperature": 1.0, "top_k": 0, "top_p": 1.0}


class AudioSource:
    """Sound files for the sequence stack. `read` records each file's length in samples, in order, so the
    label store of a conditioned run can be built with exactly the same documents."""

    separator = None

    def __init__(self):
        self.lengths: list[int] = []

    def files(self, config: RunConfig, progress: bool = True) -> list[Path]:
        self.root = resolve_source(config.data.source, progress)
        self.options = config.data.audio
        self.lengths = []
        return usable_audio_files(self.root, config.data.include or AUDIO_PATTERNS, config.data.exclude, progress)

    def read(self, path: Path) -> np.ndarray:
        audio = read_audio(path, self.options.sample_rate, self.options.max_seconds)
        self.lengths.append(len(audio))
        return audio


def audio_config(config: RunConfig) -> RunConfig:
    """Fill what an audio run leaves at the text defaults: the mu-law tokenizer, `bach-audio`, the train and
    sample defaults above."""
    if family(config.model.name).kind != "audio":
        raise GenlabError(f"model: {config.model.name!r} is not an audio model (choose from {', '.join(names('audio'))})")
    if config.tokenizer.kind not in ("char", "mulaw"):
        raise GenlabError(f"tokenizer.kind: audio runs use the mulaw tokenizer, not {config.tokenizer.kind!r}")
    config = config.model_copy(deep=True)
    config.tokenizer.kind = "mulaw"
    if config.data.source == DataConfig().source:
        config.data.source = DEFAULT_DATA
    for key, value in TRAIN_DEFAULTS.items():
        if key not in config.train.model_fields_set:
            setattr(config.train, key, value)
    for key, value in SAMPLE_DEFAULTS.items():
        if key not in config.sample.model_fields_set:
            setattr(config.sample, key, value)
    return config


def classes_of(store: TokenStore) -> list[str]:
    """The class names of a conditioned run (empty for an unconditioned one)."""
    path = store.folder / "classes.json"
    return json.loads(path.read_text()) if path.is_file() else []


class LabeledWindows(WindowSampler):
    """Training windows with the class of each: (inputs (B, T), targets (B, T), classes (B,))."""

    def __init__(self, tokens: np.ndarray, labels: np.ndarray, block_size: int, batch_size: int, seed: int):
        super().__init__(tokens, block_size, batch_size, seed)
        self.labels = labels

    def __next__(self):
        T = self.block_size
        starts = torch.randint(0, len(self.tokens) - T, (self.batch_size,), generator=self.generator).tolist()
        windows = torch.from_numpy(np.stack([np.asarray(self.tokens[s: s + T + 1], dtype=np.int64) for s in starts]))
        labels = torch.from_numpy(np.stack([np.asarray(self.labels[s: s + T], dtype=np.int64) for s in starts]))
        return windows[:, :-1], windows[:, 1:], labels.mode(dim=1).values


class ConditionedModeling(LanguageModeling):
    """Next-sample cross-entropy, each window conditioned on its class."""

    def losses(self, batch):
        x, y, c = batch
        logits = self.forward(x, c)
        loss = token_losses(logits, y).mean()
        yield "model", loss, {"loss": loss.item()}


def evaluate_conditioned(model, tokens: np.ndarray, labels: np.ndarray, block_size: int, device, batch_size: int,
                         max_batches: int | None) -> dict:
    """Mean loss (nats/sample) over `tokens`, each window conditioned on its samples' commonest class."""
    nats, count = 0.0, 0
    context = getattr(model, "eval_context", 0)  # optional in the sequence protocol: WaveNet's receptive field
    model.eval()
    with torch.no_grad():
        for (x, y), (c, _) in zip(eval_windows(tokens, block_size, batch_size, max_batches, context),
                                  eval_windows(labels, block_size, batch_size, max_batches, context)):
            losses = token_losses(model(x.to(device), c.mode(dim=1).values.to(device)), y.to(device)).cpu()
            valid = y.reshape(-1) >= 0
            nats += float(losses[valid].double().sum())
            count += int(valid.sum())
    loss = nats / max(count, 1)
    return {"loss": loss, "bits_per_unit": loss / math.log(2), "perplexity": math.exp(loss), "tokens": count}


class AudioTask(SequenceTask):
    compiles = False  # WaveNet's conditioned forward is called eagerly

    def defaults(self, config: RunConfig) -> RunConfig:
        return audio_config(config)

    def tokenizer_options(self, config: RunConfig):
        return config.data.audio

    def prepare(self, config: RunConfig, run: RunDir, resume: bool, progress: bool):
        resumed = resume and (run.data / "header.json").is_file()
        tokenizer, store = super().prepare(config, run, resume, progress)
        if config.data.audio.condition and not resumed:
            lengths = self.source.lengths  # recorded while the store above read each file, in order
            files = self.source.files(config, progress=False)
            names = [class_of(f, self.source.root) for f in files]
            classes = sorted(set(names))
            if len(classes) < 2:
                raise GenlabError(f"data.audio.condition: {config.data.source} needs sound files in at least two "
                                  "subfolders (one per class)")
            index = {c: i for i, c in enumerate(classes)}
            TokenStore.build(run.data / "labels", ([np.full(n, index[c])] for c, n in zip(names, lengths)),
                             len(classes), np.ones(len(classes), dtype=np.int64), config.data.val_fraction,
                             config.data.test_fraction, config.data.split_chunk, config.train.seed,
                             tail=config.data.split == "tail")
            (run.data / "classes.json").write_text(json.dumps(classes))
        return tokenizer, store

    def build_model(self, config: RunConfig, data) -> torch.nn.Module:
        tokenizer, store = data
        classes = classes_of(store)
        if classes:
            config = config.model_copy(update={"model": config.model.model_copy(update={"num_classes": len(classes)})})
        return family(config.model.name).model(config.model, tokenizer.vocab_size)

    def training(self, config: RunConfig, run: RunDir, data, model: torch.nn.Module, device: torch.device) -> Training:
        if not classes_of(data[1]):
            return super().training(config, run, data, model, device)
        tokenizer, store = data
        labels = TokenStore(store.folder / "labels")
        block = config.model.block_size
        batches = LabeledWindows(store.split("train"), labels.split("train"), block, config.train.batch_size, config.train.seed)
        val_tokens, val_labels = store.split("val"), labels.split("val")
        generator = AudioGenerator.from_parts(run, config, tokenizer, model, device)

        def evaluate(full: bool = False) -> dict:
            if len(val_tokens) < 2:
                return {}
            r = evaluate_conditioned(model, val_tokens, val_labels, batches.block_size, device, config.train.batch_size,
                                     None if full else config.train.eval_batches)
            return {"val_loss": round(r["loss"], 5), "val_bits_per_sample": round(r["bits_per_unit"], 5)}

        def write_samples(step: int, _weights: dict) -> None:
            generator.save_sample(generator.generate(max_new_tokens=config.train.sample_tokens, seed=step)[0],
                                  run.samples / f"step_{step:06d}")

        return Training(ConditionedModeling(model), batches, evaluate, write_samples,
                        items_per_batch=config.train.batch_size * batches.block_size)


class AudioGenerator(SequenceGenerator):
    """Generate from an audio run: `generate(prime=WAV, seconds=...)` -> list[AudioSample]."""

    modality = "audio"

    @property
    def sample_rate(self) -> int:
        return self.tokenizer.sample_rate

    @property
    def classes(self) -> list[str]:
        return classes_of(TokenStore(self.run.data))

    def prime_audio(self, prime) -> np.ndarray:
        """A prime (a sound file's path, or samples at the run's rate) as float samples; silence when None."""
        if prime is None or (isinstance(prime, str) and not prime):
            return np.zeros(0, dtype=np.float32)
        if isinstance(prime, (str, Path)):
            if not Path(prime).is_file():
                raise GenlabError(f"{prime}: no such sound file")
            audio = read_audio(Path(prime), self.sample_rate, MAX_PRIME_SECONDS + 1)
            if len(audio) > MAX_PRIME_SECONDS * self.sample_rate:
                raise GenlabError(f"{prime}: a prime may last {MAX_PRIME_SECONDS:.0f} s at most (its continuation's "
                                  "file holds it whole)")
            return audio
        return np.asarray(prime, dtype=np.float32)

    def encode_prompt(self, prime) -> list[int]:
        audio = self.prime_audio(prime)
        return self.tokenizer.encode(audio).tolist() if len(audio) else [self.tokenizer.silence]

    def class_index(self, label) -> int | None:
        """A class name or index -> its index (None for an unconditioned run; class 0 when none is asked)."""
        classes = self.classes
        if not classes:
            if label is not None:
                raise GenlabError("--class: this audio run is not conditioned on classes (data.audio.condition)")
            return None
        if label is None:
            return 0
        if str(label) in classes:
            return classes.index(str(label))
        if str(label).isdigit() and int(label) < len(classes):
            return int(label)
        raise GenlabError(f"--class: {label!r} is not a class of this run (classes: {', '.join(classes)})")

    def engine(self, use_cache: bool = True, text: bool = False, continuous: bool = False, class_label=None) -> Engine:
        index = self.class_index(class_label)
        model = self.model if index is None else Conditioned(self.model, torch.tensor([index], device=self.device))
        return Engine(model, None, self.device, use_cache, continuous)

    def generate(self, prime=None, n: int = 1, seed: int | None = None, seconds: float | None = None,
                 max_new_tokens: int | None = None, class_label=None, use_cache: bool = True, progress: bool = False,
                 **decoding) -> list[AudioSample]:
        """n continuations of `prime` (a sound file or samples; silence when None), `seconds` long (or
        max_new_tokens samples; the run's sample.max_new_tokens otherwise). The same seed gives the same
        sound; with `use_cache=False` every sample is recomputed over the receptive field (the slow path)."""
        if seconds is not None:
            if seconds <= 0:
                raise GenlabError("--seconds: must be positive")
            max_new_tokens = max(1, round(seconds * self.sample_rate))
        prime_audio = self.prime_audio(prime)
        requests = self.requests(prime_audio if len(prime_audio) else None, n, seed, [], max_new_tokens=max_new_tokens, **decoding)
        engine = self.engine(use_cache, class_label=class_label)
        slots = [engine.add(r) for r in requests]
        total = requests[0].decoding.max_new_tokens
        bar = progress_bar(total=total, desc="generating", unit="sample", enabled=progress)
        while engine.active:
            cancel.check()
            engine.step()
            bar.update(1)
        bar.close()
        return [AudioSample(np.concatenate([prime_audio, self.tokenizer.decode(engine.tokens(s))]), self.sample_rate,
                            len(prime_audio), engine.slots[s].finish) for s in slots]

    def save_sample(self, sample: AudioSample, stem: Path) -> list[Path]:
        split = sample.prime_samples / sample.sample_rate if sample.prime_samples else None
        return write_audio(sample.audio, sample.sample_rate, stem, split, title=f"{self.run.path.name}")

    def evaluate(self, data: str | None = None, samples: int = 0, sample_tokens: int = 0, seed: int = 0, progress: bool = True) -> dict:
        """Loss and bits per sample on the held-out split (or on sound files at `data`), beside the entropy of
        the training split's sample histogram (what a model that ignores the past would score)."""
        store = TokenStore(self.run.data)
        if data is None:
            tokens, where = store.split("val"), "val split"
        else:
            tokens, where = self.encode_corpus(data, progress), data
        if self.classes and data is None:
            r = evaluate_conditioned(self.model, tokens, TokenStore(store.folder / "labels").split("val"),
                                     self.config.model.block_size, self.device, 8, None)
        else:
            if self.classes:
                print("note: scoring other files without their classes (class 0 for every window)", file=sys.stderr)
            model = self.model if not self.classes else self.engine(class_label=0).model
            r = evaluate_tokens(model, tokens, self.tokenizer.unit_lengths(), self.config.model.block_size, self.device, 8)
        return {"data": where, "samples": r["tokens"], "loss": r["loss"], "bits_per_sample": r["bits_per_unit"],
                "unigram_bits_per_sample": unigram_bits(store.split("train"), self.tokenizer.vocab_size),
                "seconds": round(r["tokens"] / self.sample_rate, 1)}


def unigram_bits(tokens: np.ndarray, vocab_size: int) -> float:
    """Entropy in bits of the histogram of `tokens`: the bits per sample of a model that ignores the past."""
    counts = np.bincount(np.asarray(tokens, dtype=np.int64), minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


TASK = AudioTask("audio", AudioSource(), AudioGenerator)
