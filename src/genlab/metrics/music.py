"""Music metrics: how much generated pieces look like real ones, note by note.

A piece is its notes (pitch, onset, offset in quarter notes) and its bar
starts. Per-piece numbers are averaged over a set of pieces; the same
numbers for held-out real music are the reference they are read against.

    pitch_class_distance  total-variation distance (0..1) between a piece's pitch-class
                          histogram and that of the reference music as a whole
    pitch_range           highest minus lowest pitch, semitones
    note_density          note onsets per quarter note
    polyphony             mean number of notes sounding together (16th-note grid, silent steps left out)
    scale_consistency     share of notes inside the best-fitting major/natural-minor scale
    empty_bar_rate        share of bars in which no note sounds
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAJOR_SCALE = np.array([0, 2, 4, 5, 7, 9, 11])  # a natural minor scale is the major scale of its relative key
GRID = 0.25  # quarter notes per polyphony step (a 16th note)


@dataclass
class Piece:
    notes: np.ndarray  # (N, 3) float: pitch, onset, offset in quarter notes
    downbeats: np.ndarray  # (M,) bar starts in quarter notes, ascending

    @classmethod
    def from_score(cls, score) -> "Piece":
        """A symusic Score (ticks) -> Piece; drum tracks are left out (their pitches are instruments)."""
        tpq = score.ticks_per_quarter
        rows = [(n.pitch, n.time / tpq, n.end / tpq) for t in score.tracks if not t.is_drum for n in t.notes]
        notes = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
        downbeats = np.asarray(score.get_downbeats(), dtype=np.float64) / tpq
        return cls(notes, downbeats)

    @property
    def empty(self) -> bool:
        return len(self.notes) == 0


def pitch_class_histogram(pieces: list[Piece]) -> np.ndarray:
    """Share of note onsets per pitch class over all `pieces`, shape (12,) (all zeros when there are no notes)."""
    counts = np.zeros(12)
    for p in pieces:
        counts += np.bincount(p.notes[:, 0].astype(np.int64) % 12, minlength=12)
    return counts / counts.sum() if counts.sum() else counts


def pitch_class_distance(piece: Piece, reference: np.ndarray) -> float:
    return 0.5 * float(np.abs(pitch_class_histogram([piece]) - reference).sum())


def pitch_range(piece: Piece) -> float:
    return float(piece.notes[:, 0].max() - piece.notes[:, 0].min())


def note_density(piece: Piece) -> float:
    span = piece.notes[:, 2].max() - piece.notes[:, 1].min()
    return len(piece.notes) / max(span, GRID)


def polyphony(piece: Piece) -> float:
    start = piece.notes[:, 1].min()
    steps = int(np.ceil((piece.notes[:, 2].max() - start) / GRID)) + 1
    sounding = np.zeros(steps + 1)
    on = np.floor((piece.notes[:, 1] - start) / GRID).astype(np.int64)
    off = np.maximum(np.ceil((piece.notes[:, 2] - start) / GRID).astype(np.int64), on + 1)
    np.add.at(sounding, on, 1)
    np.add.at(sounding, off, -1)
    active = np.cumsum(sounding)[:steps]
    return float(active[active > 0].mean())


def scale_consistency(piece: Piece) -> float:
    classes = piece.notes[:, 0].astype(np.int64) % 12
    counts = np.bincount(classes, minlength=12)
    return max(counts[(MAJOR_SCALE + tonic) % 12].sum() for tonic in range(12)) / len(classes)


def bar_starts(piece: Piece) -> np.ndarray:
    """Bar starts covering the piece: the score's downbeats, continued in 4/4 past the last one."""
    end = piece.notes[:, 2].max()
    bars = piece.downbeats[piece.downbeats < end] if len(piece.downbeats) else np.zeros(1)
    if len(bars) == 0:
        bars = np.zeros(1)
    step = bars[-1] - bars[-2] if len(bars) > 1 else 4.0
    extra = np.arange(bars[-1] + step, end, step)
    return np.concatenate([bars, extra])


def empty_bar_rate(piece: Piece) -> float:
    starts = bar_starts(piece)
    first = np.searchsorted(starts, piece.notes[:, 1].min(), side="right") - 1  # bars before the first note do not count
    starts = starts[max(first, 0):]
    ends = np.append(starts[1:], piece.notes[:, 2].max())
    on, off = piece.notes[:, 1], piece.notes[:, 2]
    filled = [(on < e) & (off > s) for s, e in zip(starts, ends)]
    return float(np.mean([not f.any() for f in filled]))


def music_metrics(pieces: list[Piece], reference_histogram: np.ndarray) -> dict:
    """The metrics above averaged over `pieces`; a piece without notes counts as all bars empty."""
    full = [p for p in pieces if not p.empty]

    def mean(f) -> float:
        return float(np.mean([f(p) for p in full])) if full else float("nan")

    empty = [empty_bar_rate(p) for p in full] + [1.0] * (len(pieces) - len(full))
    return {
        "pieces": len(pieces),
        "notes_per_piece": float(np.mean([len(p.notes) for p in pieces])) if pieces else 0.0,
        "pitch_class_distance": mean(lambda p: pitch_class_distance(p, reference_histogram)),
        "pitch_range": mean(pitch_range),
        "note_density": mean(note_density),
        "polyphony": mean(polyphony),
        "scale_consistency": mean(scale_consistency),
        "empty_bar_rate": float(np.mean(empty)) if empty else float("nan"),
    }
