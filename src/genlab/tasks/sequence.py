"""The sequence stack shared by text, code and music.

    files -> tokenizer (trained once) -> token store (memmap) -> model -> LM objective -> Trainer
    run dir -> SequenceGenerator: generate / stream / evaluate

A modality supplies a `SequenceSource` (which files, how to read one, what
joins documents); everything after that is identical for every modality.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np
import torch

from genlab import distributed
from genlab.distributed import pick_device
from genlab.config import RunConfig, load_config, save_config
from genlab.datasets.token_store import TokenStore, WindowSampler, eval_windows
from genlab.errors import GenlabError
from genlab.folders import claim, empty
from genlab.models import SEQUENCE_FAMILIES, family_class
from genlab.objectives.lm import LanguageModeling, token_losses
from genlab.runs import RunDir, load_tensors
from genlab.files import atomic_write_text
from genlab.sampling.lm import Decoding, generate_tokens
from genlab.tokenizers import load_tokenizer, save_tokenizer, train_tokenizer
from genlab.trainer import Trainer
from genlab.weights import load_weights, weights_of


class SequenceSource(Protocol):
    """What a modality tells the sequence stack."""

    separator: str | None  # joins documents in the token stream (None: nothing)

    def files(self, config: RunConfig, progress: bool) -> list[Path]:
        """The documents of `config.data`, in a fixed order."""
        ...

    def read(self, path: Path):
        """One document, as the tokenizer takes it (text for text and code, the path for MIDI)."""
        ...


# Fields that may change between a run and its resumption: budgets and display.
_RESUMABLE = {("train", "max_steps"), ("train", "max_time"), ("train", "progress"), ("out",)}


def _comparable(config: RunConfig) -> dict:
    d = config.model_dump()
    d.pop("out")
    for section, key in [k for k in _RESUMABLE if len(k) == 2]:
        d[section].pop(key)
    return d


def open_run(config: RunConfig, overwrite: bool) -> tuple[RunDir, bool]:
    """The run directory for `config`, and whether to resume what it holds.

    Only a folder genlab marked as a run is resumed or replaced (genlab.folders); a marked run that
    never reached its first checkpoint is emptied and started again."""
    run = RunDir(config.out)
    if claim(run.path, "run", overwrite=overwrite, inputs=[config.data.source, config.train.init_from]):
        if run.latest_checkpoint() is not None and run.config.is_file():
            saved = load_config(run.config)
            if _comparable(saved) != _comparable(config):
                raise GenlabError(f"{run.path}: holds a run with a different config; pass --overwrite or another --out")
            return run, True
        empty(run.path)
    return run, False


def build_model(config: RunConfig, vocab_size: int) -> torch.nn.Module:
    if config.model.name not in SEQUENCE_FAMILIES:
        raise GenlabError(f"model: {config.model.name!r} is not a sequence model (choose from {', '.join(SEQUENCE_FAMILIES)})")
    return family_class(config.model.name)(config.model, vocab_size)


def document_pieces(source: SequenceSource, path: Path):
    """A document as consecutive pieces: a source with `pieces(path)` streams a large file
    piece by piece (flat memory); any other yields its whole `read(path)`."""
    pieces = getattr(source, "pieces", None)
    return pieces(path) if pieces is not None else [source.read(path)]


def separator_ids(tokenizer, source: SequenceSource) -> list[int] | None:
    return tokenizer.encode(source.separator) if source.separator else None


def prepare_corpus(config: RunConfig, run: RunDir, source: SequenceSource, resume: bool, progress: bool):
    """Tokenizer and token store of the run: trained and built once, reused on resume."""
    if resume and run.tokenizer.is_file() and (run.data / "header.json").is_file():
        return load_tokenizer(run.tokenizer), TokenStore(run.data)
    files = source.files(config, progress)
    if not files:
        raise GenlabError(f"{config.data.source}: no usable files")
    if config.train.init_from:  # fine-tuning keeps the base run's vocabulary
        tokenizer = load_tokenizer(RunDir(config.train.init_from).require().tokenizer)
    else:
        # A source may hand its tokenizer its own options (music: data.music); else the tokenizer section.
        options = source.tokenizer_options(config) if hasattr(source, "tokenizer_options") else config.tokenizer
        tokenizer = train_tokenizer(config.tokenizer.kind, (p for f in files for p in document_pieces(source, f)), options)
    save_tokenizer(tokenizer, run.tokenizer)
    from genlab.progress import progress_bar

    bar = progress_bar(files, desc="tokenizing", unit="file", enabled=progress and len(files) >= 20)
    encoded = ((tokenizer.encode(p) for p in document_pieces(source, f)) for f in bar)
    store = TokenStore.build(
        run.data, encoded, tokenizer.vocab_size, tokenizer.unit_lengths(),
        config.data.val_fraction, config.data.test_fraction, config.data.split_chunk, config.train.seed,
        separator=separator_ids(tokenizer, source),
    )
    return tokenizer, store


def evaluate_tokens(model, tokens: np.ndarray, unit_lengths: np.ndarray, block_size: int, device, batch_size: int = 16, max_batches: int | None = None) -> dict:
    """Mean loss (nats/token), bits per unit and perplexity of `model` over `tokens`."""
    nats = 0.0
    count = 0
    units = 0
    lengths = torch.from_numpy(np.asarray(unit_lengths, dtype=np.int64))
    model.eval()
    with torch.no_grad():
        for x, y in eval_windows(tokens, block_size, batch_size, max_batches):
            losses = token_losses(model(x.to(device)), y.to(device)).cpu()
            valid = y.reshape(-1) >= 0
            nats += float(losses[valid].double().sum())
            count += int(valid.sum())
            units += int(lengths[y.reshape(-1)[valid]].sum())
    loss = nats / count
    return {"loss": loss, "bits_per_unit": nats / math.log(2) / max(units, 1), "perplexity": math.exp(loss), "tokens": count}


def train_sequence(config: RunConfig, source: SequenceSource, progress: bool = True, overwrite: bool = False):
    """Train (or resume) the sequence run `config` describes; returns (config, results)."""
    torch.manual_seed(config.train.seed)
    w = distributed.world()
    if w.is_main:  # under torchrun, rank 0 prepares the run directory and the others read it
        run, resume = open_run(config, overwrite)
        if not resume:  # a resumed run's config is rewritten once its checkpoint has loaded
            save_config(config, run.config)
        tokenizer, store = prepare_corpus(config, run, source, resume, progress)
    distributed.barrier(w)
    if not w.is_main:
        run = RunDir(config.out)
        resume = run.latest_checkpoint() is not None
        tokenizer, store = load_tokenizer(run.tokenizer), TokenStore(run.data)
        progress = False
    model = build_model(config, tokenizer.vocab_size)
    if config.train.init_from and not resume:
        base = RunDir(config.train.init_from)
        load_weights({"model": model}, load_tensors(base.weights), base.weights)
    device = pick_device(config.train.device)
    block = config.model.block_size if hasattr(config.model, "block_size") else 128
    train_tokens, val_tokens = store.split("train"), store.split("val")

    if hasattr(model, "fit"):  # count-based families (n-gram) are fitted, not trained by gradient
        import time

        started = time.perf_counter()
        model.fit(train_tokens)
        from genlab.runs import save_tensors

        save_tensors(run.weights, weights_of({"model": model}))
        results = {"step": 0, "elapsed": round(time.perf_counter() - started, 3)}
        if len(val_tokens) > 1:
            r = evaluate_tokens(model, val_tokens, tokenizer.unit_lengths(), block, device)
            results |= {"val_loss": r["loss"], f"val_bits_per_{tokenizer.unit}": r["bits_per_unit"], "val_perplexity": r["perplexity"]}
        with open(run.metrics, "a") as f:
            f.write(json.dumps(results) + "\n")
        return config, results

    batches = WindowSampler(train_tokens, block, config.train.batch_size, config.train.seed)
    if hasattr(source, "augment"):  # training windows only (music: random transposition); val stays as is
        batches = source.augment(batches, tokenizer, config)
    forward = torch.compile(model) if config.train.compile else None
    objective = LanguageModeling(model, forward)
    generator = getattr(source, "generator_class", SequenceGenerator).from_parts(run, config, tokenizer, model, device)
    unit_lengths = tokenizer.unit_lengths()

    def evaluate() -> dict:
        if len(val_tokens) < 2:
            return {}
        r = evaluate_tokens(model, val_tokens, unit_lengths, batches.block_size, device, config.train.batch_size, config.train.eval_batches)
        return {"val_loss": round(r["loss"], 5), f"val_bits_per_{tokenizer.unit}": round(r["bits_per_unit"], 5)}

    def write_samples(step: int) -> None:
        text = generator.generate(max_new_tokens=config.train.sample_tokens, seed=step)
        atomic_write_text(run.samples / f"step_{step:06d}.txt", generator.render(text))

    trainer = Trainer(objective, batches, config.train, run, evaluate, write_samples,
                      items_per_batch=config.train.batch_size * batches.block_size)
    if resume:
        trainer.load_checkpoint()
        if w.is_main:
            save_config(config, run.config)  # the new budget
        if progress and trainer.state.step:
            print(f"resuming {run.path} from step {trainer.state.step}")
    return config, trainer.fit()


class SequenceGenerator:
    """Generate from a sequence run: `generate(prompt, ...)` -> text (or a stream of pieces)."""

    def __init__(self, run_dir: Path | str, device: str = "auto"):
        run = RunDir(run_dir).require()
        config = load_config(run.config)
        tokenizer = load_tokenizer(run.tokenizer)
        dev = pick_device(device)
        model = build_model(config, tokenizer.vocab_size)
        load_weights({"model": model}, load_tensors(run.weights), run.weights)
        self._init(run, config, tokenizer, model.to(dev), dev)

    @classmethod
    def from_parts(cls, run: RunDir, config: RunConfig, tokenizer, model, device) -> "SequenceGenerator":
        self = cls.__new__(cls)
        self._init(run, config, tokenizer, model, device)
        return self

    def _init(self, run, config, tokenizer, model, device) -> None:
        self.run, self.config, self.tokenizer, self.model, self.device = run, config, tokenizer, model, device

    # ---- what a modality may override -------------------------------------------

    def encode_prompt(self, prompt) -> list[int]:
        """Prompt -> token ids; an empty prompt starts from the document separator."""
        ids = self.tokenizer.encode(prompt) if prompt else []
        if not ids:
            sep = self.tokenizer.encode("\n") if self.tokenizer.unit != "token" else [0]
            ids = sep[-1:] if sep else [0]
        return ids

    def render(self, text) -> str:
        return text

    # ---- generation --------------------------------------------------------------

    def decoding(self, **overrides) -> Decoding:
        s = self.config.sample
        d = Decoding(s.max_new_tokens, s.temperature, s.top_k, s.top_p, s.repetition_penalty)
        for k, v in overrides.items():
            if v is not None:
                setattr(d, k, v)
        return d

    def token_stream(self, prompt_ids: list[int], n: int, d: Decoding, seed: int | None, use_cache: bool = True) -> Iterator[torch.Tensor]:
        g = torch.Generator(device=self.device)
        g.manual_seed(seed if seed is not None else torch.seed() % (1 << 63))
        x = torch.tensor([prompt_ids] * n, dtype=torch.long, device=self.device)
        return generate_tokens(self.model, x, d, g, use_cache=use_cache)

    def generate(
        self,
        prompt: str = "",
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        repetition_penalty: float | None = None,
        stop: list[str] | None = None,
        seed: int | None = None,
        n: int = 1,
        stream: bool = False,
        use_cache: bool = True,
    ):
        """Continue `prompt`. Returns the new text (a list of n texts when n > 1), or with
        `stream=True` (n == 1) an iterator of text pieces as they are decoded. Generation
        ends at max_new_tokens or at the first stop string, which is not included."""
        d = self.decoding(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty)
        ids = self.encode_prompt(prompt if prompt is not None else self.config.sample.prompt)
        if stream:
            if n != 1:
                raise GenlabError("stream=True generates one sample at a time (n must be 1)")
            return self._stream(ids, d, seed, stop or [], use_cache)
        texts = ["".join(pieces) for pieces in self._decode_rows(ids, n, d, seed, stop or [], use_cache)]
        return texts[0] if n == 1 else texts

    def _stream(self, ids, d, seed, stop, use_cache) -> Iterator[str]:
        for pieces in self._decode_rows(ids, 1, d, seed, stop, use_cache, live=True):
            yield from pieces

    def _decode_rows(self, ids, n, d, seed, stop, use_cache, live: bool = False):
        """Decode n rows incrementally; with `live`, yield each row's new pieces as they settle."""
        rows = [_IncrementalText(self.tokenizer, stop) for _ in range(n)]
        for next_ids in self.token_stream(ids, n, d, seed, use_cache):
            for row, t in zip(rows, next_ids.tolist()):
                row.push(t)
            if live:
                yield [rows[0].take()]
            if all(r.stopped for r in rows):
                break
        for r in rows:
            r.finish()
        if live:
            yield [rows[0].take()]
        else:
            yield from ([r.text] for r in rows)

    # ---- evaluation --------------------------------------------------------------

    def evaluate(self, data: str | None = None, samples: int = 8, sample_tokens: int = 200, seed: int = 0, progress: bool = True) -> dict:
        """Loss, bits per char/byte and perplexity on the held-out split (or on `data`),
        plus distinct-1/2 of `samples` generated texts."""
        from genlab.metrics.text import distinct_n

        if data is None:
            tokens = TokenStore(self.run.data).split("val")
            where = "val split"
        else:
            tokens = self.encode_corpus(data, progress)
            where = data
        block = getattr(self.model, "max_context", None) or self.config.model.block_size
        r = evaluate_tokens(self.model, tokens, self.tokenizer.unit_lengths(), block, self.device)
        texts = self.generate(max_new_tokens=sample_tokens, n=samples, seed=seed)
        texts = texts if isinstance(texts, list) else [texts]
        return {
            "data": where,
            "tokens": r["tokens"],
            "loss": r["loss"],
            f"bits_per_{self.tokenizer.unit}": r["bits_per_unit"],
            "perplexity": r["perplexity"],
            "distinct_1": distinct_n(texts, 1),
            "distinct_2": distinct_n(texts, 2),
        }

    def encode_corpus(self, data: str, progress: bool) -> np.ndarray:
        from genlab.tasks import task_module

        source = task_module(self.config.task).source()
        cfg = self.config.model_copy(update={"data": self.config.data.model_copy(update={"source": data, "include": [], "exclude": []})})
        sep = separator_ids(self.tokenizer, source) or []
        parts = []
        for f in source.files(cfg, progress):
            if parts and sep:
                parts.append(np.asarray(sep, dtype=np.int64))
            parts.extend(np.asarray(self.tokenizer.encode(p), dtype=np.int64) for p in document_pieces(source, f))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


class _IncrementalText:
    """Turns token ids into text as they arrive: holds back incomplete UTF-8 (byte-level
    BPE can split a character across tokens) and any tail that may begin a stop string."""

    def __init__(self, tokenizer, stop: list[str]):
        self.tokenizer, self.stop = tokenizer, [s for s in stop if s]
        self.text = ""  # settled text so far
        self.pending: list[int] = []
        self.emitted = 0
        self.stopped = False

    def push(self, token: int) -> None:
        if self.stopped:
            return
        self.pending.append(token)
        piece = self.tokenizer.decode(self.pending)
        if piece.endswith("\ufffd") and len(self.pending) < 4:
            return  # wait for the rest of a multi-byte character
        self.text += piece
        self.pending = []
        for s in self.stop:
            i = self.text.find(s)
            if i >= 0:
                self.text, self.stopped = self.text[:i], True

    def finish(self) -> None:
        if self.pending and not self.stopped:
            self.text += self.tokenizer.decode(self.pending)
            self.pending = []
        self.stopped = True

    def take(self) -> str:
        """The new text that can no longer change."""
        safe = len(self.text)
        if not self.stopped:
            for s in self.stop:
                for k in range(min(len(s) - 1, len(self.text)), 0, -1):
                    if self.text.endswith(s[:k]):
                        safe = min(safe, len(self.text) - k)
                        break
        out = self.text[self.emitted:safe]
        self.emitted = max(self.emitted, safe)
        return out
