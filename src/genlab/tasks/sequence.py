"""The sequence stack shared by text, code and music.

    files -> tokenizer (trained once) -> token store (memmap) -> model -> LM objective -> Trainer
    run dir -> SequenceGenerator: generate / stream / evaluate, decoded by genlab.sampling.engine

A modality supplies a `SequenceSource` (which files, how to read one, what
joins documents) to a `SequenceTask` (genlab.tasks.driver's protocol); a
modality that differs further (music: its tokenizer options, transposed
training windows) subclasses the task. Everything else is identical.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np
import torch

from genlab.core.config import RunConfig
from genlab.core.errors import GenlabError
from genlab.core.families import family, family_of, names
from genlab.core.files import atomic_write_text
from genlab.core.generators import SamplingParams
from genlab.core.progress import progress_bar
from genlab.core.runs import RunDir, load_tensors
from genlab.core.samples import TextSample
from genlab.core.weights import load_weights
from genlab.datasets.teacher_cache import CachedWindows, TeacherCache, build_remote_teacher_cache, build_teacher_cache
from genlab.datasets.token_store import StreamWindows, TokenStore, WindowSampler, eval_windows
from genlab.metrics.text import distinct_n, repetition_rate, two_sample_test
from genlab.models.hf_causal import CausalLM, load_hf
from genlab.objectives.kd import Distillation, SequenceCritic
from genlab.objectives.lm import LanguageModeling, token_losses
from genlab.sampling.constraints import compile_pattern
from genlab.sampling.endpoint import PREFIX as REMOTE, Endpoint
from genlab.sampling.engine import Engine, Request, decode
from genlab.sampling.scoring import mean_states, prompt_logprobs
from genlab.tasks import task_of
from genlab.tasks.driver import Training, load_trained
from genlab.tokenizers import load_tokenizer, save_tokenizer, train_tokenizer
from genlab.tokenizers.hf import HFTokenizer
from genlab.tokenizers.parallel import encode_documents, workers_for
from genlab.training import distributed
from genlab.training.compiling import Compiled


class SequenceSource(Protocol):
    """What a modality tells the sequence stack."""

    separator: str | None  # joins documents in the token stream (None: nothing)

    def files(self, config: RunConfig, progress: bool) -> list[Path]:
        """The documents of `config.data`, in a fixed order."""
        ...

    def read(self, path: Path):
        """One document, as the tokenizer takes it (text for text and code, the path for MIDI)."""
        ...


def check_family(config: RunConfig) -> None:
    if family(config.model.name).kind != "sequence":
        raise GenlabError(f"model: {config.model.name!r} is not a sequence model (choose from {', '.join(names('sequence'))})")


def check_carry_state(config: RunConfig) -> None:
    if not family(config.model.name).can("carry_state"):
        able = ", ".join(n for n in names("sequence") if family(n).can("carry_state"))
        raise GenlabError(f"train.carry_state: only recurrent models carry a state ({able}), not {config.model.name!r}")
    if distributed.world().active:
        raise GenlabError("train.carry_state: not supported under torchrun (each rank would carry its own state)")


def build_model(config: RunConfig, vocab_size: int) -> torch.nn.Module:
    check_family(config)
    return family(config.model.name).model(config.model, vocab_size)


def document_pieces(source: SequenceSource, path: Path):
    """A document as consecutive pieces: a source with `pieces(path)` streams a large file
    piece by piece (flat memory); any other yields its whole `read(path)`."""
    pieces = getattr(source, "pieces", None)
    return pieces(path) if pieces is not None else [source.read(path)]


def separator_ids(tokenizer, source: SequenceSource) -> list[int] | None:
    return tokenizer.encode(source.separator) if source.separator else None


def prepare_corpus(config: RunConfig, run: RunDir, source: SequenceSource, resume: bool, progress: bool, tokenizer_options):
    """Tokenizer and token store of the run: trained and built once, reused on resume."""
    if resume and run.tokenizer.is_file() and (run.data / "header.json").is_file():
        return load_tokenizer(run.tokenizer), TokenStore(run.data)
    files = source.files(config, progress)
    if not files:
        raise GenlabError(f"{config.data.source}: no usable files")
    if shares_teacher_tokenizer(config):  # a student reads text as its teacher does
        tokenizer = teacher_tokenizer(config)
    elif config.train.init_from:  # fine-tuning keeps the base run's vocabulary
        tokenizer = load_tokenizer(RunDir(config.train.init_from).require().tokenizer)
    else:
        tokenizer = train_tokenizer(config.tokenizer.kind, (p for f in files for p in document_pieces(source, f)), tokenizer_options)
    save_tokenizer(tokenizer, run.tokenizer)

    bar = progress_bar(files, desc="tokenizing", unit="file", enabled=progress and len(files) >= 20)
    workers = workers_for(config.data.tokenize_workers, sum(f.stat().st_size for f in files))
    encoded = encode_documents(tokenizer, run.tokenizer, (document_pieces(source, f) for f in bar), workers)
    store = TokenStore.build(
        run.data, encoded, tokenizer.vocab_size, tokenizer.unit_lengths(),
        config.data.val_fraction, config.data.test_fraction, config.data.split_chunk, config.train.seed,
        separator=separator_ids(tokenizer, source), tail=config.data.split == "tail",
    )
    return tokenizer, store


def shares_teacher_tokenizer(config: RunConfig) -> bool:
    """A run or Hugging Face teacher lends the student its tokenizer; a remote one keeps it private: its student
    reads with its own (characters by default), and the teacher's tokens must match them (tasks/remote.py)."""
    return bool(config.distill.teacher) and not config.distill.teacher.startswith(REMOTE)


def teacher_tokenizer(config: RunConfig):
    """The teacher run's tokenizer, which a distilled student must share: checked against what the student's
    config asks for (its tokenizer kind, the run it starts from)."""
    name = config.distill.teacher
    if name.startswith("hf:"):  # a local Hugging Face model: its own tokenizer, kept in the student's run
        tokenizer = HFTokenizer.from_folder(Path(name[3:]).expanduser())
    else:
        tokenizer = load_tokenizer(RunDir(name).require().tokenizer)
    if "kind" in config.tokenizer.model_fields_set and config.tokenizer.kind != tokenizer.kind:
        raise GenlabError(f"tokenizer.kind: a student shares its teacher's tokenizer ({name} uses "
                          f"{tokenizer.kind!r}, not {config.tokenizer.kind!r})")
    if config.train.init_from:
        base = load_tokenizer(RunDir(config.train.init_from).require().tokenizer)
        if base.to_json() != tokenizer.to_json():
            raise GenlabError(f"train.init_from: {config.train.init_from} has another tokenizer than the teacher "
                              f"{name}; a student and its teacher must read the same tokens")
    return tokenizer


def distillation(config: RunConfig, model, forward, vocab_size: int, block_size: int, device):
    """The objective of a distilled run: the teacher loaded on `device`, checked against the student."""
    d = config.distill
    critic = SequenceCritic(vocab_size).to(device) if d.adv_weight > 0 else None
    teacher = None if d.cache_topk else checked_teacher(config, vocab_size, block_size, device)
    return Distillation(model, teacher, d.alpha, d.temperature, forward, d.adv_weight, critic, config.train.seed)


def checked_teacher(config: RunConfig, vocab_size: int, block_size: int, device):
    """The teacher model on `device`, frozen, after checking that it can teach this student."""
    name = config.distill.teacher
    if name.startswith("hf:"):
        teacher = CausalLM(load_hf(name[3:], torch.device(device))[1])
        teacher.vocab_size = teacher.hf.config.vocab_size
    else:
        _, teacher_config, _, teacher, _ = load_trained(name, str(device))
        if teacher_config.task != config.task:
            raise GenlabError(f"distill.teacher: {name} is a {teacher_config.task} run, the student a {config.task} run")
    if teacher.vocab_size != vocab_size:
        raise GenlabError(f"distill.teacher: its vocabulary has {teacher.vocab_size} tokens, the student's {vocab_size}")
    limit = teacher.max_context
    if limit is not None and limit < block_size:
        raise GenlabError(f"model.block_size: the student's windows ({block_size}) are longer than the teacher's context "
                          f"({limit}); set model.block_size <= {limit}")
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def cached_teacher(config: RunConfig, run: RunDir, tokens: np.ndarray, block: int, device):
    """The run's cache of its teacher's top-k logits over the training split: made once, reused on resume."""
    folder = run.path / "teacher_cache"
    d = config.distill
    if (folder / "header.json").is_file() and TeacherCache(folder).matches(d.teacher, d.cache_topk, block):
        return TeacherCache(folder)
    if d.teacher.startswith(REMOTE):  # its top_logprobs over the same fixed windows, asked of the endpoint
        build_remote_teacher_cache(folder, Endpoint(d.teacher), tokens, block, d.cache_topk,
                                   load_tokenizer(run.tokenizer), progress=config.train.progress)
        return TeacherCache(folder)
    teacher = checked_teacher(config, load_tokenizer(run.tokenizer).vocab_size, block, device)
    build_teacher_cache(folder, teacher, tokens, block, d.cache_topk, device, d.teacher, progress=config.train.progress)
    return TeacherCache(folder)


def evaluate_tokens(model, tokens: np.ndarray, unit_lengths: np.ndarray, block_size: int, device, batch_size: int = 16, max_batches: int | None = None) -> dict:
    """Mean loss (nats/token), bits per unit and perplexity of `model` over `tokens`."""
    nats = 0.0
    count = 0
    units = 0
    lengths = torch.from_numpy(np.asarray(unit_lengths, dtype=np.int64))
    model.eval()
    with torch.no_grad():
        # eval_context is optional in the sequence protocol: a receptive field's history (WaveNet)
        for x, y in eval_windows(tokens, block_size, batch_size, max_batches, getattr(model, "eval_context", 0)):
            losses = token_losses(model(x.to(device)), y.to(device)).cpu()
            valid = y.reshape(-1) >= 0
            nats += float(losses[valid].double().sum())
            count += int(valid.sum())
            units += int(lengths[y.reshape(-1)[valid]].sum())
    loss = nats / count
    return {"loss": loss, "bits_per_unit": nats / math.log(2) / max(units, 1), "perplexity": math.exp(loss), "tokens": count}


class SequenceTask:
    """The task protocol (genlab.tasks.driver) for a modality made of token sequences."""

    compiles = True  # the training forward; an RNN carrying its state (train.carry_state) steps eagerly

    def __init__(self, name: str, source: SequenceSource, generator: type):
        self.name, self.source, self.Generator = name, source, generator

    def defaults(self, config: RunConfig) -> RunConfig:
        check_family(config)
        if config.train.compile and config.train.carry_state:
            raise GenlabError("train.compile: not with train.carry_state (the carried state is stepped eagerly)")
        if shares_teacher_tokenizer(config):  # the student's config records the tokenizer it reads with: its teacher's
            config = config.model_copy(deep=True)
            config.tokenizer.kind = teacher_tokenizer(config).kind
        return config

    def tokenizer_options(self, config: RunConfig):
        return config.tokenizer

    def check_carry_state(self, config: RunConfig) -> None:
        """train.carry_state is possible for this run (GenlabError saying why not)."""
        check_carry_state(config)

    def augment(self, batches, tokenizer, config: RunConfig):
        """Training windows as the model sees them (music transposes them); validation is never augmented."""
        return batches

    def prepare(self, config: RunConfig, run: RunDir, resume: bool, progress: bool):
        return prepare_corpus(config, run, self.source, resume, progress, self.tokenizer_options(config))

    def reopen(self, config: RunConfig, run: RunDir):
        return load_tokenizer(run.tokenizer), TokenStore(run.data)

    def build_model(self, config: RunConfig, data) -> torch.nn.Module:
        tokenizer, _ = data
        return build_model(config, tokenizer.vocab_size)

    def training(self, config: RunConfig, run: RunDir, data, model: torch.nn.Module, device: torch.device) -> Training:
        tokenizer, store = data
        block = getattr(config.model, "block_size", 128)
        train_tokens, val_tokens = store.split("train"), store.split("val")
        carry = config.train.carry_state
        if carry:
            self.check_carry_state(config)
            batches = StreamWindows(train_tokens, block, config.train.batch_size, config.train.seed)
        else:
            batches = self.augment(WindowSampler(train_tokens, block, config.train.batch_size, config.train.seed), tokenizer, config)
        forward = Compiled(model, "train.compile") if config.train.compile else None
        generator = self.Generator.from_parts(run, config, tokenizer, model, device)
        unit_lengths = tokenizer.unit_lengths()
        # A fitted (count-based) model is scored on the whole split once; a trained one on eval_batches each eval.
        eval_batches = None if family_of(config).can("fit") else config.train.eval_batches

        def evaluate(full: bool = False) -> dict:
            if len(val_tokens) < 2:
                return {}
            r = evaluate_tokens(model, val_tokens, unit_lengths, batches.block_size, device, config.train.batch_size,
                                None if full else eval_batches)
            return {"val_loss": round(r["loss"], 5), f"val_bits_per_{tokenizer.unit}": round(r["bits_per_unit"], 5)}

        def write_samples(step: int, _weights: dict) -> None:  # the live model: it is the one being trained
            sample = generator.generate(max_new_tokens=config.train.sample_tokens, seed=step)[0]
            generator.save_sample(sample, run.samples / f"step_{step:06d}")

        if config.distill.teacher:
            if carry:
                raise GenlabError("train.carry_state: not with distillation (the teacher reads each window afresh)")
            objective = distillation(config, model, forward, tokenizer.vocab_size, batches.block_size, device)
            if config.distill.cache_topk:  # the teacher once over the split, then from disk, on fixed windows
                cache = cached_teacher(config, run, train_tokens, batches.block_size, device)
                batches = CachedWindows(train_tokens, cache, config.train.batch_size, config.train.seed)
        else:
            objective = LanguageModeling(model, forward, carry_state=carry)
        return Training(objective, batches, evaluate, write_samples, items_per_batch=config.train.batch_size * batches.block_size)


# The longest prime a music or audio continuation takes: its files (MIDI, WAV, piano roll, spectrogram) hold the
# prime whole, and a few bytes of MIDI (two notes 20,000 s apart) or of FLAC (an hour of silence) can ask for
# gigabytes of them (a server grew past 9 GB on one).
MAX_PRIME_SECONDS = 600.0


class SequenceGenerator:
    """Generate from a sequence run: `generate(prompt, n=...)` -> list[TextSample]; `stream(prompt)` -> text pieces."""

    modality = "text"

    def __init__(self, run_dir: Path | str, device: str = "auto"):
        run, config, (tokenizer, _), model, dev = load_trained(run_dir, device)
        self._init(run, config, tokenizer, model, dev)

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

    def default_stop(self) -> list[str]:
        return []

    def describe(self, sample) -> str:
        """A sample as the text training writes to samples/."""
        return sample.text

    def save_sample(self, sample, stem: Path) -> list[Path]:
        """Write what training keeps of a sample at each eval: STEM.txt (audio writes STEM.wav and a picture)."""
        atomic_write_text(stem.with_suffix(".txt"), self.describe(sample))
        return [stem.with_suffix(".txt")]

    # ---- generation --------------------------------------------------------------

    def decoding(self, **overrides) -> SamplingParams:
        """The run's sample section, with the fields given here (None = keep) in its place, by name."""
        fields = self.config.sample.model_dump(exclude={"prompt"})
        return SamplingParams(**fields | {k: v for k, v in overrides.items() if v is not None})

    def engine(self, use_cache: bool = True, text: bool = True, continuous: bool = False) -> Engine:
        """A step engine over this run's model; with `text`, its events carry decoded text and honour stop
        strings; `continuous` for requests that come and go (a server)."""
        return Engine(self.model, self.tokenizer if text else None, self.device, use_cache, continuous)

    def requests(self, prompt=None, n: int = 1, seed: int | None = None, stop: list[str] | None = None, **decoding) -> list[Request]:
        """n requests continuing `prompt` (the run's sample.prompt when None); row i draws with seed + i."""
        ids = self.encode_prompt(prompt if prompt is not None else self.config.sample.prompt)
        seed = seed if seed is not None else int(torch.seed() % (1 << 62))
        stop = self.default_stop() if stop is None else list(stop)
        d = self.decoding(**decoding)
        return [Request(ids, d, seed + i, stop) for i in range(n)]

    def generate_requests(self, requests: list[Request], use_cache: bool = True) -> list[TextSample]:
        engine = self.engine(use_cache)
        slots = decode(engine, requests)
        return [TextSample(engine.text(s), engine.tokens(s), engine.slots[s].finish) for s in slots]

    def generate(self, prompt=None, n: int = 1, seed: int | None = None, stop: list[str] | None = None,
                 use_cache: bool = True, **decoding) -> list[TextSample]:
        """n continuations of `prompt` (max_new_tokens, temperature, top_k, top_p, repetition_penalty as
        keywords; the run's sample section otherwise). Each ends at max_new_tokens or before its first
        stop string. The same seed gives the same samples; sample i equals a single sample with seed + i.
        `sample.text` is the continuation alone, `sample.full_text` the prompt and the continuation."""
        samples = self.generate_requests(self.requests(prompt, n, seed, stop, **decoding), use_cache)
        for sample in samples:
            sample.prompt = prompt if prompt is not None else self.config.sample.prompt
        return samples

    def stream(self, prompt=None, seed: int | None = None, stop: list[str] | None = None, use_cache: bool = True,
               **decoding) -> Iterator[str]:
        """One continuation of `prompt`, as text pieces the moment they can no longer change."""
        engine = self.engine(use_cache)
        engine.add(self.requests(prompt, 1, seed, stop, **decoding)[0])
        while engine.active:
            for event in engine.step():
                if event.text:
                    yield event.text

    # ---- what a server asks of a sequence model ---------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def load_weights(self, path: Path) -> None:
        """Replace the model's weights, in place, with those of `path` (this run's model.safetensors, rewritten by
        a training that goes on: the server swaps them in between requests)."""
        load_weights({"model": self.model}, load_tensors(path), path)
        self.model.eval()

    @property
    def parameter_count(self) -> int:
        """Parameters as the family counts them (a GPT without its position table, as nanoGPT reports; an n-gram's
        table entries); any other family's every parameter."""
        count = getattr(self.model, "num_params", None)  # optional in the sequence protocol
        return int(count()) if count is not None else sum(p.numel() for p in self.model.parameters())

    def perplexity_of(self, tokens: np.ndarray, batch_size: int = 16, max_batches: int | None = None) -> dict:
        """Loss (nats/token), bits per unit and perplexity of the model over `tokens` (this run's ids)."""
        block = self.max_context or getattr(self.config.model, "block_size", 128)
        return evaluate_tokens(self.model, tokens, self.tokenizer.unit_lengths(), block, self.device, batch_size, max_batches)

    @property
    def max_context(self) -> int | None:
        """The most tokens the model sees at once (None: unbounded, as an RNN)."""
        return self.model.max_context

    def chat_prompt(self, messages: list[dict]) -> str | None:
        """A chat as a prompt in the model's own template; None when it has none (the caller's plain one)."""
        return None

    @property
    def can_embed(self) -> bool:
        return family_of(self.config).can("embed") and isinstance(self.model, torch.nn.Module)  # not an ONNX file

    def embed(self, texts: list[list[int]]):
        """A generator over texts' mean last-layer states, yielding between texts (sampling/scoring.py)."""
        return mean_states(self.model, texts, self.device)

    def score(self, ids: list[int], top: int):
        """A generator over each token's log-probability, yielding between batches (sampling/scoring.py)."""
        return prompt_logprobs(self.model, ids, top, self.device)

    def compile_pattern(self, regex: str, timeout: float, memory_mb: int):
        """`regex` compiled against this model's tokens (sampling/constraints.py: an automaton built within
        the budget, else a lazy matcher); ending is offered as the token that starts an empty prompt (a line
        break for text runs)."""
        return compile_pattern(regex, self.tokenizer, self.encode_prompt("")[-1], timeout, memory_mb)

    # ---- evaluation --------------------------------------------------------------

    def evaluate(self, data: str | None = None, samples: int | None = None, sample_tokens: int = 200, seed: int = 0,
                 progress: bool = True, c2st: bool = False, temperature: float = 1.0) -> dict:
        """Loss, bits per char/byte and perplexity on the held-out split (or on `data`), plus distinct-1/2 of
        `samples` generated texts (8); with `c2st`, `two_sample` of `samples` texts (200) at `temperature`."""
        if data is None:
            tokens = TokenStore(self.run.data).split("val")
            where = "val split"
        else:
            tokens = self.encode_corpus(data, progress)
            where = data
        r = self.perplexity_of(tokens)
        texts = [s.text for s in self.generate(max_new_tokens=sample_tokens, n=8 if c2st or samples is None else samples, seed=seed)]
        results = {
            "data": where,
            "tokens": r["tokens"],
            "loss": r["loss"],
            f"bits_per_{self.tokenizer.unit}": r["bits_per_unit"],
            "perplexity": r["perplexity"],
            "distinct_1": distinct_n(texts, 1),
            "distinct_2": distinct_n(texts, 2),
        }
        if c2st:
            results |= self.two_sample(tokens, samples or 200, temperature=temperature, seed=seed)
        return results

    def two_sample(self, tokens: np.ndarray, n: int = 200, length: int = 128, prime: int = 16,
                   temperature: float = 1.0, seed: int = 0) -> dict:
        """How far samples are from real text, by what a model's loss cannot show: n held-out windows of `tokens`,
        each's first `prime` tokens continued by the model for `length` tokens at `temperature` (no top-k or
        top-p: the model's own distribution, sharpened or flattened alike for every model compared); the real
        continuations against the generated ones in a classifier two-sample test (metrics/text.py: 0.5 =
        indistinguishable), with distinct-1..4 and the repetition rate of each side."""
        length = min(length, (self.max_context or length + prime) - prime)
        span = prime + length
        if len(tokens) < span * 20:
            raise GenlabError(f"--c2st: the held-out text holds {len(tokens)} tokens, too few for 20 windows of {span}")
        rng = np.random.default_rng(seed)
        starts = np.sort(rng.choice(len(tokens) - span, size=min(n, (len(tokens) - span) // span), replace=False))
        windows = [np.asarray(tokens[s: s + span]).tolist() for s in starts]
        decoding = self.decoding(max_new_tokens=length, temperature=temperature, top_k=0, top_p=1.0)
        requests = [Request(w[:prime], decoding, seed + i, []) for i, w in enumerate(windows)]
        engine = self.engine()
        slots = decode(engine, requests)
        generated = [engine.text(slot) for slot in slots]
        real = [self.tokenizer.decode(w[prime:]) for w in windows]
        out = two_sample_test(real, generated, seed)
        for side, texts in (("real", real), ("generated", generated)):
            out |= {f"{side}_distinct_{k}": distinct_n(texts, k) for k in range(1, 5)}
            out[f"{side}_repetition"] = repetition_rate(texts)
        return out | {"c2st_temperature": temperature, "c2st_tokens_per_text": length}

    def encode_corpus(self, data: str, progress: bool) -> np.ndarray:
        source = task_of(self.config.task).source
        cfg = self.config.model_copy(update={"data": self.config.data.model_copy(update={"source": data, "include": [], "exclude": []})})
        sep = separator_ids(self.tokenizer, source) or []
        parts = []
        for f in source.files(cfg, progress):
            if parts and sep:
                parts.append(np.asarray(sep, dtype=np.int64))
            parts.extend(np.asarray(self.tokenizer.encode(p), dtype=np.int64) for p in document_pieces(source, f))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
