"""Seeing and hearing music and sound: a piano-roll PNG, a WAV rendered from a MIDI score, and a
spectrogram PNG beside a WAV for raw audio.

Audio comes from FluidSynth with a General MIDI SoundFont when both are
installed (Debian: `fluidsynth`, `fluid-soundfont-gm`; or GENLAB_SOUNDFONT
names a .sf2 file); otherwise from a small additive synthesizer written here,
so a WAV always comes out.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import time
import wave
from pathlib import Path

import numpy as np

from genlab.core.files import atomic_write_bytes
from genlab.media.plots import new_figure, save_figure

SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
)
SAMPLE_RATE = 22050
PARTIALS = np.array([1.0, 0.45, 0.25, 0.12, 0.06])  # amplitude of harmonics 1..5: a soft, piano-like tone
RELEASE = 0.12  # seconds a note fades after its end


def piano_roll_png(score, dest: Path, split_seconds: float | None = None, title: str = "") -> None:
    """Notes of a symusic Score as bars (time in seconds, MIDI pitch), written to `dest` as PNG.

    `split_seconds` shades what came before it (a prime) so the continuation stands out.
    """
    from matplotlib import colormaps

    seconds = score.to("second")
    fig, ax = new_figure(10, 4)
    palette = colormaps["tab10"]
    for i, track in enumerate(t for t in seconds.tracks if not t.is_drum):
        bars = [(n.time, max(n.duration, 1e-3)) for n in track.notes]
        for pitch in sorted({n.pitch for n in track.notes}):
            ax.broken_barh([b for b, n in zip(bars, track.notes) if n.pitch == pitch], (pitch - 0.4, 0.8),
                           color=palette(i % 10))
    if split_seconds:
        ax.axvspan(0, split_seconds, color="0.85", zorder=0, label="prime")
        ax.legend(loc="upper right")
    ax.set_xlabel("seconds")
    ax.set_ylabel("MIDI pitch")
    ax.set_xlim(0, max(seconds.end(), 1.0))
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    save_figure(fig, dest)


def find_soundfont() -> Path | None:
    """GENLAB_SOUNDFONT, else the first General MIDI SoundFont found in the usual Debian places."""
    chosen = os.environ.get("GENLAB_SOUNDFONT")
    for candidate in ([chosen] if chosen else []) + list(SOUNDFONTS):
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def synthesize(score, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A symusic Score -> mono float32 audio in [-1, 1], shape (samples,), by additive synthesis.

    Each note: harmonics of its pitch under a fast attack and an exponential
    decay (louder notes by velocity), with a short release after note-off.
    """
    seconds = score.to("second")
    notes = [n for t in seconds.tracks if not t.is_drum for n in t.notes]
    total = int((max((n.end for n in notes), default=0.0) + RELEASE + 0.1) * sample_rate)
    out = np.zeros(max(total, 1), dtype=np.float64)
    harmonics = np.arange(1, len(PARTIALS) + 1)
    for n in notes:
        start = int(n.time * sample_rate)
        held = max(n.duration, 0.02)
        t = np.arange(int((held + RELEASE) * sample_rate)) / sample_rate
        freq = 440.0 * 2.0 ** ((n.pitch - 69) / 12)
        audible = harmonics * freq < sample_rate / 2  # no partial above Nyquist (it would alias)
        tone = (PARTIALS[audible, None] * np.sin(2 * np.pi * freq * harmonics[audible, None] * t)).sum(0)
        envelope = np.minimum(t / 0.01, 1.0) * np.exp(-2.5 * t)
        envelope *= np.clip(1.0 - (t - held) / RELEASE, 0.0, 1.0)
        piece = tone * envelope * (n.velocity / 127.0)
        end = min(start + len(piece), len(out))
        out[start:end] += piece[: end - start]
    peak = np.abs(out).max()
    return (out / peak * 0.9 if peak > 0 else out).astype(np.float32)


def wav_bytes(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Mono float audio in [-1, 1] -> a 16-bit PCM WAV file's bytes."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


FLUIDSYNTH_TAIL_S = 10.0  # what FluidSynth may write past the last note: its voices' release


def fluidsynth_wav(command: list[str], wav: Path, max_bytes: int, timeout: float) -> None:
    """Run FluidSynth writing `wav`, stopped (CalledProcessError) once the file passes `max_bytes` or time runs
    out. It renders until every voice has died away, and with a hundred notes struck at once its event queue
    overflows, note-offs are lost and it never stops: 650 MB of WAV in 20 s, for as long as it was let run.
    (The file is watched rather than capped with RLIMIT_FSIZE: FluidSynth's audio library sizes a 64 MB
    shared-memory file at start, which any sensible cap kills.)"""
    deadline = time.monotonic() + timeout
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline or (wav.exists() and wav.stat().st_size > max_bytes):
                    raise subprocess.CalledProcessError(-1, command, f"stopped past {max_bytes} bytes or {timeout:.0f} s")
                time.sleep(0.05)
            if proc.returncode != 0:
                raise subprocess.CalledProcessError(proc.returncode, command)
        except BaseException:
            proc.kill()
            raise


def render_wav(score, midi_path: Path, dest: Path, sample_rate: int | None = None) -> str:
    """Write `dest` (WAV) for the score saved at `midi_path`, at `sample_rate` (default: 44.1 kHz from FluidSynth,
    SAMPLE_RATE from the built-in synthesizer); returns which renderer made it."""
    fluidsynth, soundfont = shutil.which("fluidsynth"), find_soundfont()
    if fluidsynth and soundfont:
        tmp = Path(dest).with_name(f".{Path(dest).name}.{os.getpid()}.tmp.wav")
        rate, seconds = sample_rate or 44100, float(score.to("second").end())
        try:
            fluidsynth_wav([fluidsynth, "-ni", "-g", "0.8", "-r", str(rate), "-F", str(tmp), str(soundfont), str(midi_path)], tmp,
                           max_bytes=int((seconds + FLUIDSYNTH_TAIL_S) * rate * 4) + 4096, timeout=60 + seconds)
            os.replace(tmp, dest)
            return f"fluidsynth ({soundfont.name})"
        except (subprocess.SubprocessError, OSError):
            tmp.unlink(missing_ok=True)  # fall through to the built-in synthesizer
    rate = sample_rate or SAMPLE_RATE
    atomic_write_bytes(dest, wav_bytes(synthesize(score, rate), rate))
    return "built-in synthesizer"


def save_midi(score, dest: Path) -> None:
    atomic_write_bytes(Path(dest), bytes(score.dumps_midi()))


MAX_BEATS = 100_000  # past this a note's time is a decoding overflow, not music (about 7 hours at 240 bpm)


def playable(score):
    """A copy of `score` without what a model's broken output can leave: events at negative times or, for notes,
    past MAX_BEATS (an overflowed time shift), and tempo, meter, key and marker events past the last note
    (unsorted, they become 2^28-tick gaps in the file, and hours of silence a renderer writes to disk)."""
    out = score.copy()
    limit = MAX_BEATS * out.ticks_per_quarter
    for track in out.tracks:
        track.notes.filter(lambda n: 0 <= n.time <= limit and n.duration > 0, inplace=True)
        for events in (track.controls, track.pitch_bends, track.pedals):
            events.filter(lambda e: 0 <= e.time <= limit, inplace=True)
    end = max((n.end for track in out.tracks for n in track.notes), default=0)
    for events in (out.tempos, out.time_signatures, out.key_signatures, out.markers):
        events.filter(lambda e: 0 <= e.time <= end, inplace=True)
    return out.sort()


def write_music(score, dest: Path, prime_seconds: float | None = None, title: str = "") -> tuple[list[Path], str]:
    """Write DEST.mid, and beside it DEST.png (piano roll) and DEST.wav; returns the three paths and which
    renderer made the audio."""
    dest = Path(dest).with_suffix(".mid")
    score = playable(score)
    save_midi(score, dest)
    piano_roll_png(score, dest.with_suffix(".png"), prime_seconds, title)
    renderer = render_wav(score, dest, dest.with_suffix(".wav"))
    return [dest, dest.with_suffix(".png"), dest.with_suffix(".wav")], renderer


def spectrogram_png(audio: np.ndarray, sample_rate: int, dest: Path, split_seconds: float | None = None, title: str = "") -> None:
    """A log-magnitude spectrogram of mono audio (N,), time across and frequency up; a dashed line marks
    where a prime ends and the generated continuation begins."""
    figure, ax = new_figure(10, 3.5)
    nfft = 512 if sample_rate >= 8000 else 256
    if len(audio) > nfft:
        ax.specgram(audio, NFFT=nfft, Fs=sample_rate, noverlap=nfft // 2, cmap="magma", scale="dB")
    ax.set_xlabel("seconds")
    ax.set_ylabel("Hz")
    if split_seconds:
        ax.axvline(split_seconds, color="white", linestyle="--", linewidth=1.2)
    if title:
        ax.set_title(title)
    save_figure(figure, dest)


def write_audio(audio: np.ndarray, sample_rate: int, dest: Path, prime_seconds: float | None = None, title: str = "") -> list[Path]:
    """Write DEST.wav (16-bit PCM) and DEST.png (its spectrogram); returns both paths."""
    dest = Path(dest).with_suffix(".wav")
    atomic_write_bytes(dest, wav_bytes(audio, sample_rate))
    spectrogram_png(audio, sample_rate, dest.with_suffix(".png"), prime_seconds, title)
    return [dest, dest.with_suffix(".png")]
