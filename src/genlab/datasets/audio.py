"""Sound files in, mono float samples at one rate out; and `bach-audio`, chorales rendered to WAV.

Files are read with soundfile (WAV, FLAC, OGG and whatever libsndfile reads),
stereo is averaged to mono, and a file at another rate is resampled with
soxr (a band-limited resampler), so every run sees one sample rate.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write_text
from genlab.core.progress import progress_bar
from genlab.datasets.midi import build_bach
from genlab.datasets.text import select_files, usable_files
from genlab.media.audio import render_wav

AUDIO_PATTERNS = ["*.wav", "*.flac", "*.ogg", "*.aiff", "*.aif"]
BACH_AUDIO_CHORALES = 60  # how many chorales `bach-audio` renders (about 45 minutes of sound)
BACH_AUDIO_RATE = 16000


MIN_SAMPLE_RATE = 1000


def read_audio(path: Path, sample_rate: int, max_seconds: float | None = None) -> np.ndarray:
    """A sound file -> mono float32 samples (N,) in [-1, 1] at `sample_rate`."""
    import soundfile
    import soxr

    try:
        with soundfile.SoundFile(str(path)) as f:
            rate = f.samplerate
            if rate < MIN_SAMPLE_RATE:  # resampling 1 Hz to 8 kHz took soxr a minute and 7 GB
                raise GenlabError(f"{path}: a sample rate of {rate} Hz is not a sound's (at least {MIN_SAMPLE_RATE:,} Hz)")
            # Only what is kept is decoded: a small compressed file (FLAC of silence) can hold hours.
            frames = -1 if max_seconds is None else int(max_seconds * rate)
            audio = f.read(frames=frames, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as e:
        raise GenlabError(f"{path}: not a readable sound file ({e})") from None
    mono = audio.mean(axis=1)  # (N,)
    if not np.isfinite(mono).all():  # a float file can hold them; mu-law has no code for NaN
        raise GenlabError(f"{path}: holds samples that are not numbers (NaN or infinite)")
    if rate != sample_rate and len(mono):
        mono = soxr.resample(mono, rate, sample_rate).astype(np.float32)
    return np.clip(mono, -1.0, 1.0)


def usable_audio_files(root: Path, include: list[str] | None = None, exclude: list[str] | None = None,
                       progress: bool = True) -> list[Path]:
    """The sound files under `root` (or `root` itself) that libsndfile opens and that hold samples, sorted;
    each skipped file gets a warning naming it and why."""
    import soundfile

    root = Path(root)
    files = select_files(root, include or AUDIO_PATTERNS, exclude)
    if not files:
        raise GenlabError(f"{root}: no sound files found ({', '.join(AUDIO_PATTERNS)})")
    def problem(path: Path) -> str | None:
        try:
            frames = soundfile.info(str(path)).frames
        except (soundfile.LibsndfileError, RuntimeError, OSError) as e:
            return f"not a readable sound file ({e})"
        return "the file holds no samples" if frames < 2 else None

    usable = usable_files(files, problem, "audio", progress)
    if not usable:
        raise GenlabError(f"{root}: no usable sound file (all {len(files)} were unreadable or empty)")
    return usable


def class_of(path: Path, root: Path) -> str:
    """A file's class for global conditioning: the first folder under `root` that holds it ("" at the top)."""
    parts = Path(path).relative_to(root).parts if Path(root).is_dir() else ()
    return parts[0] if len(parts) > 1 else ""


def build_bach_audio(cache: Path, progress: bool = True) -> Path:
    """`bach-audio`: the first BACH_AUDIO_CHORALES chorales of `bach`, rendered to 16 kHz WAV through
    FluidSynth and a General MIDI SoundFont (genlab's built-in synthesizer where they are missing; the
    marker file says which made it). Built once into `cache/bach-audio/`."""
    from symusic import Score

    dest = Path(cache) / "bach-audio"
    marker = dest / ".complete"
    if marker.is_file():
        return dest
    chorales = sorted(build_bach(cache, progress).glob("*.mid"))[:BACH_AUDIO_CHORALES]
    dest.mkdir(parents=True, exist_ok=True)
    renderers = set()
    for midi in progress_bar(chorales, desc="rendering bach-audio", unit="chorale", enabled=progress):
        renderers.add(render_wav(Score(str(midi)), midi, dest / f"{midi.stem}.wav", BACH_AUDIO_RATE))
    if progress:
        print(f"bach-audio: {len(chorales)} chorales at {BACH_AUDIO_RATE} Hz by {', '.join(sorted(renderers))} -> {dest}", file=sys.stderr)
    atomic_write_text(marker, f"{len(chorales)} chorales at {BACH_AUDIO_RATE} Hz, rendered by {', '.join(sorted(renderers))}\n")
    return dest
