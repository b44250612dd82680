"""MIDI tokenizer: miditok (REMI by default) behind genlab's tokenizer protocol.

    MIDI file or Score -> keep tracks (programs) -> merge into one part, or keep
    instruments apart with Program tokens -> miditok tokens -> ids

Everything that decides the ids — the miditok tokenization and its config,
the track selection, the merge — is saved in `tokenizer.json`, together with
the vocabulary itself, so a run decodes exactly as it encoded and a prime MIDI
given at sampling time is encoded as the training files were.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np

from genlab.core.config import MusicOptions
from genlab.core.errors import GenlabError
from genlab.datasets.midi import read_score

# Tokenizations that produce one flat stream of ids (the multi-vocabulary ones, CPWord and Octuple, do not).
TOKENIZATIONS = ("REMI", "MIDILike", "TSD", "Structured")


def miditok_tokenizer(tokenization: str, settings: dict | None = None, params: dict | None = None):
    """A miditok tokenizer: new from genlab's `settings` (TokenizerConfig fields), or read back
    from `params`, the JSON miditok itself saves (so every field round-trips as miditok means it)."""
    import miditok

    if tokenization not in TOKENIZATIONS:
        raise GenlabError(f"data.music.tokenization: {tokenization!r} is not supported (choose from {', '.join(TOKENIZATIONS)})")
    cls = getattr(miditok, tokenization)
    if params is None:
        return cls(miditok.TokenizerConfig(**settings))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "miditok.json"
        path.write_text(json.dumps(params))
        return cls(params=path)


def miditok_params(tokenizer) -> dict:
    """What miditok saves for `tokenizer`, as a dict."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save(tmp, filename="miditok.json")
        return json.loads((Path(tmp) / "miditok.json").read_text())


def miditok_settings(use_programs: bool, programs: list[int] | None, use_velocities: bool) -> dict:
    """The miditok TokenizerConfig fields genlab sets; everything else keeps miditok's defaults."""
    settings = {
        "use_tempos": True,  # so that seconds of music mean the same before and after tokenization
        "use_time_signatures": True,
        "use_velocities": use_velocities,
        "use_programs": use_programs,
        "one_token_stream_for_programs": True,
    }
    if use_programs and programs is not None:
        settings["programs"] = list(programs)
    return settings


class MidiTokenizer:
    kind = "midi"
    unit = "token"

    def __init__(self, tokenization: str, miditok, programs: list[int] | None, start_id: int = 0,
                 vocab: list[str] | None = None):
        self.tokenization = tokenization
        self.miditok = miditok
        self.programs = programs
        self.start_id = start_id  # the token most training pieces begin with: where a piece from scratch starts
        self.use_programs = bool(self.miditok.config.use_programs)
        self.vocab = [t for t, _ in sorted(self.miditok.vocab.items(), key=lambda kv: kv[1])]
        if vocab is not None and vocab != self.vocab:
            raise GenlabError("tokenizer.json: this miditok version builds a different vocabulary than the one the run was trained with")

    @classmethod
    def train(cls, documents: Iterable, options) -> "MidiTokenizer":
        """A tokenizer for `options` (genlab.core.config.MusicOptions); reads `documents` to find the usual first token."""
        if not isinstance(options, MusicOptions):
            raise GenlabError("tokenizer.kind: 'midi' tokenizes MIDI files; use it with `genlab train music`")
        settings = miditok_settings(options.use_programs, options.programs, options.use_velocities)
        tokenizer = cls(options.tokenization, miditok_tokenizer(options.tokenization, settings), options.programs)
        firsts = Counter(ids[0] for ids in map(tokenizer.encode, documents) if ids)
        if not firsts:
            raise GenlabError("the MIDI corpus has no notes in the kept programs (check data.music.programs)")
        tokenizer.start_id = firsts.most_common(1)[0][0]
        return tokenizer

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def prepare(self, score):
        """Keep the selected tracks of `score` (a symusic Score); without Program tokens, merge them into one part.

        Drum tracks are dropped when merging: drum "pitches" are instruments, not notes.
        """
        import symusic

        kept = [t for t in score.tracks if len(t.notes)
                and (self.programs is None or (-1 if t.is_drum else t.program) in self.programs)]
        out = symusic.Score(score.ticks_per_quarter)
        out.tempos.extend(score.tempos)
        out.time_signatures.extend(score.time_signatures)
        if self.use_programs:
            for t in kept:
                out.tracks.append(t.copy())
            return out
        merged = symusic.Track("merged", 0, False)
        for t in kept:
            if not t.is_drum:
                merged.notes.extend(t.notes)
        merged.notes.sort()
        out.tracks.append(merged)
        return out

    def encode(self, document) -> list[int]:
        """A MIDI path or a symusic Score -> token ids ([] when nothing is left after track selection)."""
        score = read_score(document) if isinstance(document, (str, Path)) else document
        score = self.prepare(score)
        if score.note_num() == 0:
            return []
        seq = self.miditok.encode(score)
        if isinstance(seq, list):  # one sequence per track; a merged score has exactly one
            seq = seq[0]
        return list(seq.ids)

    def decode(self, ids: Iterable[int]):
        """Token ids -> a symusic Score (ticks). Ill-formed stretches (a pitch with no duration) are skipped by miditok."""
        ids = [int(i) for i in ids]
        if not ids:
            import symusic

            return symusic.Score(self.miditok.time_division)
        return self.miditok.decode(ids if self.miditok.one_token_stream else [ids])

    def unit_lengths(self) -> np.ndarray:
        return np.ones(self.vocab_size, dtype=np.int64)

    def to_json(self) -> dict:
        return {"genlab_tokenizer": self.kind, "tokenization": self.tokenization, "miditok": miditok_params(self.miditok),
                "programs": self.programs, "start_id": self.start_id, "vocab": self.vocab}

    @classmethod
    def from_json(cls, data: dict) -> "MidiTokenizer":
        tokenization = data["tokenization"]
        return cls(tokenization, miditok_tokenizer(tokenization, params=data["miditok"]), data["programs"], data["start_id"], data["vocab"])
