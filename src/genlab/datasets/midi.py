"""MIDI sources: a folder of .mid/.midi files (recursive), and the embedded `bach` chorales.

A file that cannot be parsed, or holds no notes, is skipped with a warning
naming it; a source with no usable file at all is a one-line error.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from genlab.core.progress import progress_bar

from genlab.datasets.text import select_files, usable_files
from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write_bytes, atomic_write_text

MIDI_PATTERNS = ["*.mid", "*.midi", "*.MID", "*.MIDI"]


def read_score(path: Path):
    """The file as a symusic Score (ticks); an unreadable file is a GenlabError naming it."""
    import symusic

    try:
        score = symusic.Score.from_midi(Path(path).read_bytes())
    except OSError as e:
        raise GenlabError(f"{path}: cannot read ({e.strerror})") from None
    except Exception as e:  # symusic raises RuntimeError (and friends) for malformed files
        raise GenlabError(f"{path}: not a readable MIDI file ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if score.ticks_per_quarter <= 0:  # symusic reads it; every time in the file would divide by it
        raise GenlabError(f"{path}: not a readable MIDI file (0 ticks per quarter note)")
    return score


def usable_midi_files(root: Path, include: list[str] | None = None, exclude: list[str] | None = None,
                      progress: bool = True) -> list[Path]:
    """The MIDI files under `root` (or `root` itself) that parse and hold at least one note, sorted.

    Each skipped file gets a warning on stderr that names it and says why.
    """
    root = Path(root)
    files = select_files(root, include or MIDI_PATTERNS, exclude)
    if not files:
        raise GenlabError(f"{root}: no .mid or .midi files found")
    def problem(path: Path) -> str | None:
        try:
            score = read_score(path)
        except GenlabError as e:
            return str(e).removeprefix(f"{path}: ")
        return "the file holds no notes" if score.note_num() == 0 else None

    usable = usable_files(files, problem, "MIDI", progress)
    if not usable:
        raise GenlabError(f"{root}: no usable MIDI file (all {len(files)} were corrupt or empty)")
    return usable


def chorale_to_midi(work: str) -> bytes:
    """One music21 corpus work (e.g. 'bach/bwv269') as Standard MIDI File bytes."""
    from music21 import corpus, midi

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # music21 warns about harmless notation details
        score = corpus.parse(work)
        return midi.translate.music21ObjectToMidiFile(score).writestr()


def write_chorales(dest: Path, works: list[str], progress: bool = True) -> int:
    """Convert `works` into dest/<name>.mid (existing files are kept); returns how many exist after."""
    dest.mkdir(parents=True, exist_ok=True)
    done = 0
    for work in progress_bar(works, desc="converting chorales to MIDI", unit="file", enabled=progress):
        target = dest / (work.replace("/", "_").replace(".", "_") + ".mid")
        if not target.is_file():
            try:
                atomic_write_bytes(target, chorale_to_midi(work))
            except Exception as e:  # a corpus file music21 cannot translate: skip it, say so
                print(f"warning: skipping chorale {work}: {type(e).__name__}: {e}", file=sys.stderr)
                continue
        done += 1
    return done


def build_bach(cache: Path, progress: bool = True) -> Path:
    """`bach`: the 371 Bach chorales of music21's corpus (Riemenschneider numbering) as MIDI files.

    Converted once (about two minutes) into `cache/bach-chorales/`; a marker
    file records completion so later calls return at once.
    """
    from music21 import corpus

    dest = Path(cache) / "bach-chorales"
    marker = dest / ".complete"
    if marker.is_file():
        return dest
    works = list(corpus.chorales.Iterator(returnType="filename"))
    if progress:
        print(f"building the bach dataset: {len(works)} chorales from music21's corpus -> {dest}", file=sys.stderr)
    if write_chorales(dest, works, progress) == 0:
        raise GenlabError("bach: music21's corpus gave no convertible chorale")
    atomic_write_text(marker, f"{len(works)} chorales\n")
    return dest
