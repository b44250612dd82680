"""Music: MIDI files in, MIDI (with a piano roll and audio) out, on the whole sequence stack.

    MIDI folder or `bach` -> MidiTokenizer (miditok REMI) -> token store -> any sequence model -> LM objective
    run -> MusicGenerator: continue a prime (or start afresh) for N tokens, bars or seconds -> .mid/.png/.wav

Only three things differ from text: the source (MIDI files; corrupt or empty
ones skipped with a warning), the tokenizer (genlab.tokenizers.midi) and the
metrics (genlab.metrics.music). Transposition augmentation shifts training
windows at batch time, so the validation split is never transposed and
never holds a shifted copy of a training piece.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genlab.core import cancel
from genlab.core.config import DataConfig, RunConfig
from genlab.core.errors import GenlabError
from genlab.core.samples import MusicSample
from genlab.datasets import resolve_source
from genlab.datasets.midi import MIDI_PATTERNS, read_score, usable_midi_files
from genlab.datasets.token_store import TokenStore
from genlab.metrics.music import Piece, music_metrics, pitch_class_histogram
from genlab.tasks.sequence import MAX_PRIME_SECONDS, SequenceGenerator, SequenceTask, evaluate_tokens

MAX_PRIME_META = 10_000  # tempo, meter, key and marker events of a prime (10,000: 0.1 s to tokenize; 200,000: 10 s)
MAX_PRIME_NOTES = 100_000  # notes of a prime (a dense 600 s piece of piano holds ~20,000)

PITCH_PREFIXES = ("Pitch_", "NoteOn_", "NoteOff_")  # token kinds that name a pitch (drum tokens are PitchDrum_)
DEFAULT_DATA = "bach"
CHECK_EVERY = 16  # tokens between length checks when generating by seconds or bars


class TransposedWindows:
    """Training windows, each shifted by a random number of semitones in [-max_shift, +max_shift].

    Wraps a WindowSampler: input and target rows get the same shift; a row that
    a shift would push out of the tokenizer's pitch range keeps its pitches.
    The shifts come from a seeded generator saved with the checkpoint, so a
    resumed run sees the same batches.
    """

    def __init__(self, windows, vocab: list[str], max_shift: int, seed: int):
        self.windows = windows
        self.shifts = torch.arange(-max_shift, max_shift + 1)
        index = {name: i for i, name in enumerate(vocab)}
        self.table = torch.arange(len(vocab)).repeat(len(self.shifts), 1)  # (S, V): id after each shift
        self.valid = torch.ones(len(self.shifts), len(vocab), dtype=torch.bool)  # (S, V): shift keeps it in the vocab
        for i, name in enumerate(vocab):
            prefix = next((p for p in PITCH_PREFIXES if name.startswith(p)), None)
            if prefix is None:
                continue
            pitch = int(name[len(prefix):])
            for s, shift in enumerate(self.shifts.tolist()):
                target = index.get(f"{prefix}{pitch + shift}")
                if target is None:
                    self.valid[s, i] = False
                else:
                    self.table[s, i] = target
        self.generator = torch.Generator().manual_seed(seed + 1)

    @property
    def block_size(self) -> int:
        return self.windows.block_size

    @property
    def tokens(self):
        return self.windows.tokens

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = next(self.windows)  # (B, T) each
        s = torch.randint(0, len(self.shifts), (x.size(0),), generator=self.generator)  # (B,)
        ok = self.valid[s[:, None], x].all(1) & self.valid[s[:, None], y].all(1)
        s = torch.where(ok, s, int((self.shifts == 0).nonzero()))
        return self.table[s[:, None], x], self.table[s[:, None], y]

    def __iter__(self):
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**{f"windows.{k}": v for k, v in self.windows.state_dict().items()}, "transpose_generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.windows.load_state_dict({k.removeprefix("windows."): v for k, v in state.items() if k.startswith("windows.")})
        self.generator.set_state(state["transpose_generator"])


class MusicSource:
    """MIDI files for the sequence stack: the tokenizer reads each path itself."""

    separator = None

    def files(self, config: RunConfig, progress: bool = True) -> list[Path]:
        root = resolve_source(config.data.source, progress)
        return usable_midi_files(root, config.data.include or MIDI_PATTERNS, config.data.exclude, progress)

    def read(self, path: Path) -> Path:
        return path


class MusicTask(SequenceTask):
    def defaults(self, config: RunConfig) -> RunConfig:
        return super().defaults(music_config(config))

    def tokenizer_options(self, config: RunConfig):
        return config.data.music

    def check_carry_state(self, config: RunConfig) -> None:
        super().check_carry_state(config)
        if config.data.music.transpose:
            raise GenlabError("train.carry_state: consecutive windows cannot be transposed; set data.music.transpose = 0")

    def augment(self, windows, tokenizer, config: RunConfig):
        shift = config.data.music.transpose
        return TransposedWindows(windows, tokenizer.vocab, shift, config.train.seed) if shift else windows


def music_config(config: RunConfig) -> RunConfig:
    """Fill what a music run leaves at the text defaults: tokenizer kind "char" becomes "midi"
    (so `--tokenizer char` cannot be asked for music), and the default data source becomes `bach`."""
    if config.tokenizer.kind not in ("char", "midi"):
        raise GenlabError(f"tokenizer.kind: music runs use the midi tokenizer, not {config.tokenizer.kind!r}")
    if not 0 <= config.data.music.transpose <= 12:
        raise GenlabError("data.music.transpose: must be between 0 and 12 semitones (6 covers every key)")
    data = config.data
    if data.source == DataConfig().source:
        data = data.model_copy(update={"source": DEFAULT_DATA})
    return config.model_copy(update={"tokenizer": config.tokenizer.model_copy(update={"kind": "midi"}), "data": data})


# ---- lengths and cuts of a score (ticks) ------------------------------------------------


def seconds_of(score) -> float:
    return float(score.to("second").end())


def tick_at_second(score, seconds: float) -> int:
    """The tick at which `seconds` of the score have passed, following its tempo changes (120 bpm before any)."""
    tpq = score.ticks_per_quarter
    tick, elapsed, mspq = 0, 0.0, 500_000
    for tempo in sorted(score.tempos, key=lambda t: t.time):
        span = (tempo.time - tick) * mspq / 1e6 / tpq
        if elapsed + span >= seconds:
            break
        elapsed, tick, mspq = elapsed + span, tempo.time, tempo.mspq
    return int(round(tick + (seconds - elapsed) * 1e6 / mspq * tpq))


def bar_tick(score, bar: int) -> int:
    """Start tick of bar number `bar` (0-based), continuing the last bar length past the score's end."""
    downbeats = [int(t) for t in score.get_downbeats()] or [0]
    if bar < len(downbeats):
        return downbeats[bar]
    step = downbeats[-1] - downbeats[-2] if len(downbeats) > 1 else 4 * score.ticks_per_quarter
    return downbeats[-1] + (bar - len(downbeats) + 1) * step


def bars_of(score) -> int:
    """Bars the score has begun (0 for an empty score)."""
    if score.note_num() == 0:
        return 0
    return int(np.searchsorted(np.asarray(score.get_downbeats()), score.end() - 1, side="right"))


def cut(score, end_tick: int):
    """The score up to `end_tick`: later notes dropped, notes sounding past it shortened."""
    out = score.clip(0, end_tick, clip_end=False)
    for track in out.tracks:
        for note in track.notes:
            if note.end > end_tick:
                note.duration = max(end_tick - note.time, 1)
    return out


class MusicGenerator(SequenceGenerator):
    """Generate from a music run: `generate(prime, seconds=30)` -> list[MusicSample] (prime + continuation)."""

    modality = "music"

    def encode_prompt(self, prime) -> list[int]:
        """A MIDI path or Score -> its token ids; nothing -> the token most training pieces start with."""
        if prime is None or prime == "":
            return [self.tokenizer.start_id]
        return self._tokenized_prime(prime)[0]

    def prime_seconds(self, prime) -> float | None:
        """How long `prime` lasts as the tokenizer renders it (what a continuation starts after)."""
        return self._tokenized_prime(prime)[1] if prime else None

    def _tokenized_prime(self, prime) -> tuple[list[int], float]:
        """(token ids, seconds as the tokenizer renders them) of a MIDI path or Score, checked on the way."""
        if isinstance(prime, (str, Path)) and not Path(prime).is_file():
            raise GenlabError(f"{prime}: no such MIDI file")
        score = read_score(prime) if isinstance(prime, (str, Path)) else prime
        name = prime if isinstance(prime, (str, Path)) else "the prime"
        if (events := sum(len(e) for e in (score.tempos, score.time_signatures, score.key_signatures, score.markers))) > MAX_PRIME_META:
            raise GenlabError(f"{name}: holds {events:,} tempo, meter, key and marker events; a prime may hold "
                              f"{MAX_PRIME_META:,} (the tokenizer's time grows with their square)")
        if (notes := score.note_num()) > MAX_PRIME_NOTES:
            raise GenlabError(f"{name}: holds {notes:,} notes; a prime may hold {MAX_PRIME_NOTES:,}")
        if (lasts := seconds_of(score)) > MAX_PRIME_SECONDS:
            raise GenlabError(f"{name}: lasts {lasts:,.0f} s; a prime may last {MAX_PRIME_SECONDS:.0f} s at most (its "
                              "continuation's files hold it whole)")
        ids = self.tokenizer.encode(score)
        if not ids:
            raise GenlabError(f"{name}: no notes in the tracks this run keeps (data.music.programs)")
        # The tokenizer holds tempos to its own range: a file at a tempo past it (one microsecond a beat) lasts a
        # moment as written and hours as the continuation's files would hold it.
        if (lasts := seconds_of(self.tokenizer.decode(ids))) > MAX_PRIME_SECONDS:
            raise GenlabError(f"{name}: lasts {lasts:,.0f} s at the tempos this run's tokenizer keeps; a prime may last "
                              f"{MAX_PRIME_SECONDS:.0f} s at most (its continuation's files hold it whole)")
        return ids, lasts

    def generate(self, prime=None, n: int = 1, seed: int | None = None, seconds: float | None = None, bars: int | None = None,
                 max_new_tokens: int | None = None, use_cache: bool = True, on_notes=None, **decoding) -> list[MusicSample]:
        """n continuations of `prime` (a MIDI path or symusic Score; None starts afresh) by `seconds` of
        music, `bars` bars, or `max_new_tokens` tokens (the run's sample.max_new_tokens when none is given).

        Each sample's score holds the prime as the tokenizer renders it, then the new music, cut at
        exactly the asked length. Sample i equals a single sample drawn with seed + i. `on_notes(i, notes)`,
        when given, hears each new note of sample i as it is written (dicts of pitch, velocity, start and end
        in seconds; the notes the cut keeps, before their last one may be shortened by it).
        """
        if seconds is not None and bars is not None:
            raise GenlabError("--seconds and --bars: give one length, not both")
        if (seconds is not None and seconds <= 0) or (bars is not None and bars <= 0):
            raise GenlabError("--seconds/--bars: the length must be positive")
        by_length = seconds is not None or bars is not None
        # A cap so a model that never reaches the length still stops: generous for dense music.
        cap = max_new_tokens or (int(64 * (seconds if seconds is not None else 2 * bars)) + 256 if by_length else None)
        requests = self.requests(prime, n, seed, [], max_new_tokens=cap, **decoding)
        prime_ids = requests[0].prompt
        prime_score = self.tokenizer.decode(prime_ids) if prime else None

        def end_tick(score) -> int:
            if seconds is not None:
                return tick_at_second(score, (seconds_of(prime_score) if prime_score else 0.0) + seconds)
            return bar_tick(score, (bars_of(prime_score) if prime_score else 0) + bars)

        engine = self.engine(use_cache, text=False)
        slots = [engine.add(r) for r in requests]
        # Notes already known, per sample: the prime's, then those passed to on_notes.
        heard: list[set] = [set(self._note_keys(prime_score)) if prime_score is not None else set() for _ in slots]
        while engine.active:
            cancel.check()
            for event in engine.step():
                made = engine.tokens(event.slot)
                at_check = len(made) % CHECK_EVERY == 0
                measure = by_length and event.finish is None and at_check  # long enough yet?
                tell = on_notes is not None and (at_check or event.finish is not None)
                if measure or tell:
                    score = self.tokenizer.decode(prime_ids + made)
                    limit = end_tick(score) if by_length else None
                    if tell:
                        row = slots.index(event.slot)
                        self._tell_notes(on_notes, row, score, limit, heard[row])
                    if measure and score.note_num() > 0 and score.end() >= limit:
                        engine.cancel(event.slot)
        samples = []
        for slot in slots:
            made = engine.tokens(slot)
            score = self.tokenizer.decode(prime_ids + made)
            finish = "time" if engine.finish_reason(slot) == "time" else "length"  # max_time came first
            if by_length:
                if finish == "length" and score.end() < end_tick(score):
                    finish = "cap"
                score = cut(score, end_tick(score))
            samples.append(MusicSample(score, made, finish))
        return samples

    @staticmethod
    def _note_keys(score):
        for track in score.tracks:
            for note in track.notes:
                yield note.time, note.pitch, note.duration, track.program

    @classmethod
    def _tell_notes(cls, on_notes, row: int, score, limit: int | None, heard: set) -> None:
        """Pass on the notes of `score` (before `limit`) not known before: the new music as it is written."""
        timed = [n for track in score.to("second").tracks for n in track.notes]  # the same notes, in seconds
        new = []
        for key, at in zip(cls._note_keys(score), timed):
            if (limit is None or key[0] < limit) and key not in heard:
                heard.add(key)
                new.append({"pitch": int(key[1]), "velocity": int(at.velocity), "start": round(float(at.time), 4),
                            "end": round(float(at.time + at.duration), 4)})
        if new:
            on_notes(row, sorted(new, key=lambda x: x["start"]))

    def describe(self, sample) -> str:
        """A sample as readable text (what training writes to samples/): one line per bar of note names."""
        score = sample.score
        if score.note_num() == 0:
            return "(no notes)\n"
        names = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
        downbeats = np.asarray(score.get_downbeats())
        notes = sorted((n.time, n.pitch) for t in score.tracks for n in t.notes)
        lines: dict[int, list[str]] = {}
        for time, pitch in notes:
            bar = int(np.searchsorted(downbeats, time, side="right"))
            lines.setdefault(bar, []).append(f"{names[pitch % 12]}{pitch // 12 - 1}")
        head = f"{score.note_num()} notes, {seconds_of(score):.1f} s\n"
        return head + "".join(f"bar {bar:3d}: {' '.join(ps)}\n" for bar, ps in sorted(lines.items()))

    # ---- evaluation ----------------------------------------------------------------------------

    def heldout_pieces(self, tokens: np.ndarray, count: int, length: int, chunk: int | None = None) -> list:
        """Up to `count` real pieces of `length` tokens cut from held-out `tokens`, each starting where
        a piece would start (the start token) and, when `chunk` is given, inside one split chunk."""
        tokens = np.asarray(tokens)
        length = min(length, len(tokens))
        chunk = chunk or len(tokens)
        starts = np.flatnonzero(tokens[: len(tokens) - length + 1] == self.tokenizer.start_id)
        starts = starts[starts // chunk == (starts + length - 1) // chunk]
        if len(starts) == 0:
            starts = np.arange(0, len(tokens) - length + 1, length)
        chosen = starts[np.linspace(0, len(starts) - 1, min(count, len(starts))).round().astype(int)]
        return [Piece.from_score(self.tokenizer.decode(tokens[s : s + length])) for s in np.unique(chosen)]

    def evaluate(self, data: str | None = None, samples: int = 32, sample_tokens: int = 512, seed: int = 0,
                 progress: bool = True) -> dict:
        """Val loss, and the music metrics (genlab.metrics.music) of `samples` pieces generated from
        scratch (`sample_tokens` tokens each) beside the same metrics of as many held-out real pieces
        of the same length: the real music is the reference the generated numbers are read against."""
        if data is None:
            store = TokenStore(self.run.data)
            tokens, chunk, where = store.split("val"), store.header["chunk"], "val split"
        else:
            tokens, chunk, where = self.encode_corpus(data, progress), None, data
        block = self.model.max_context or self.config.model.block_size
        loss = evaluate_tokens(self.model, tokens, self.tokenizer.unit_lengths(), block, self.device)
        real = self.heldout_pieces(tokens, samples, sample_tokens, chunk)
        generated = self.generate(max_new_tokens=sample_tokens, n=samples, seed=seed)
        reference = pitch_class_histogram(real)
        made = music_metrics([Piece.from_score(s.score) for s in generated], reference)
        held = music_metrics(real, reference)
        results = {"data": where, "tokens": loss["tokens"], "loss": loss["loss"], "perplexity": loss["perplexity"]}
        for key in made:
            results[key] = made[key]
            results[f"heldout_{key}"] = held[key]
        return results


# ---- demo -----------------------------------------------------------------------------------


def chorale_opening(folder: Path, bars: int = 2):
    """The first `bars` bars of the first chorale in `folder` (a symusic Score) and its file name."""
    path = usable_midi_files(folder, progress=False)[0]
    score = read_score(path)
    return cut(score, bar_tick(score, bars)), path.name


TASK = MusicTask("music", MusicSource(), MusicGenerator)
