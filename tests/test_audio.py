"""Audio: mu-law samples, the WaveNet's receptive field and fast generation, and train -> sample -> eval from
the CLI on sound files made here."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
import torch

from genlab.models.wavenet import Conditioned, WaveNet, WaveNetConfig
from genlab.core.generators import SamplingParams
from genlab.sampling.engine import Engine, Request, decode
from genlab.tokenizers.mulaw import MuLawTokenizer


def sine(freq: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


def tiny_wavenet(**options) -> WaveNet:
    torch.manual_seed(0)
    cfg = dict(layers_per_stack=4, stacks=2, residual_channels=8, skip_channels=8) | options
    return WaveNet(WaveNetConfig(**cfg), 256).eval()


def sampled(model, prompt: list[int], n: int, use_cache: bool, seed: int = 5) -> list[int]:
    engine = Engine(model, use_cache=use_cache)
    slot = decode(engine, [Request(prompt, SamplingParams(max_new_tokens=n, temperature=1.0, top_k=0, top_p=1.0), seed)])[0]
    return engine.tokens(slot)


# ---- mu-law ----------------------------------------------------------------------------------------


def test_mu_law_round_trip_is_finest_near_zero_and_exact_at_the_levels():
    tok = MuLawTokenizer(bits=8)
    x = np.linspace(-1, 1, 20001, dtype=np.float32)
    ids = tok.encode(x)
    assert ids.min() == 0 and ids.max() == 255 and tok.vocab_size == 256
    assert np.all(np.diff(ids) >= 0)  # monotone
    back = tok.decode(ids)
    error = np.abs(back - x)
    assert error[np.abs(x) < 0.01].max() < 0.001  # quiet samples keep fine steps...
    assert error.max() < 0.05  # ...loud ones coarse ones
    assert np.array_equal(tok.encode(tok.decode(np.arange(256))), np.arange(256))
    assert tok.decode([tok.silence])[0] == pytest.approx(0.0, abs=1e-3)
    assert MuLawTokenizer(bits=4).vocab_size == 16


# ---- WaveNet -----------------------------------------------------------------------------------------


def test_the_logits_at_t_depend_on_exactly_the_last_receptive_field_samples():
    model = tiny_wavenet().double()  # the oldest sample's effect passes every layer: tiny at initialization
    rf = model.receptive_field
    assert rf == 1 + 2 * (1 + 2 + 4 + 8)
    x = torch.randint(0, 256, (1, 60), generator=torch.Generator().manual_seed(0))
    t = 50
    with torch.no_grad():
        base = model(x)[0, t]
        far, near = x.clone(), x.clone()
        far[0, t - rf] = (far[0, t - rf] + 100) % 256  # just outside the field
        near[0, t - rf + 1] = (near[0, t - rf + 1] + 100) % 256  # the oldest sample inside it
        assert torch.equal(model(far)[0, t], base)
        assert (model(near)[0, t] - base).abs().max() > 0


@pytest.mark.parametrize("kernel_size", [2, 3])
def test_fast_generation_draws_the_same_samples_as_recomputing_the_receptive_field(kernel_size):
    model = tiny_wavenet(kernel_size=kernel_size)
    prompt = torch.randint(0, 256, (40,), generator=torch.Generator().manual_seed(1)).tolist()
    # 120 new samples: several times the receptive field, so every ring buffer wraps around many times
    assert sampled(model, prompt, 120, use_cache=True) == sampled(model, prompt, 120, use_cache=False)
    assert sampled(model, [128], 60, use_cache=True) == sampled(model, [128], 60, use_cache=False)


def test_global_conditioning_changes_the_sound_and_generates_fast_as_slow():
    model = tiny_wavenet(num_classes=3)
    with torch.no_grad():
        x = torch.randint(0, 256, (1, 30))
        assert not torch.allclose(model(x, torch.tensor([0])), model(x, torch.tensor([2])))
    quiet, loud = Conditioned(model, torch.tensor([0])), Conditioned(model, torch.tensor([2]))
    assert sampled(loud, [128], 80, use_cache=True) == sampled(loud, [128], 80, use_cache=False)
    assert sampled(quiet, [128], 80, use_cache=True) != sampled(loud, [128], 80, use_cache=True)


# ---- the audio task from the command line --------------------------------------------------------


@pytest.fixture(scope="module")
def sounds(tmp_path_factory):
    """Two classes of tones at three sample rates, stereo among them, and a file that is not sound at all."""
    root = tmp_path_factory.mktemp("sounds")
    (root / "low").mkdir()
    (root / "high").mkdir()
    soundfile.write(root / "low" / "a.wav", sine(200, 8000, 2.0), 8000)
    soundfile.write(root / "low" / "b.flac", np.stack([sine(250, 16000, 2.0)] * 2, axis=1), 16000)  # stereo, resampled
    soundfile.write(root / "high" / "c.wav", sine(1000, 44100, 2.0), 44100)
    soundfile.write(root / "high" / "d.wav", sine(1200, 8000, 2.0), 8000)
    (root / "high" / "broken.wav").write_bytes(b"RIFF nonsense")
    return root


WAVENET = ["--set", "model.layers_per_stack=5", "--set", "model.stacks=1", "--set", "model.residual_channels=16",
           "--set", "model.skip_channels=16", "--set", "model.block_size=512", "--set", "data.audio.sample_rate=8000"]
TRAIN = ["--set", "train.lr=3e-3", "--set", "train.warmup_steps=5", "--set", "train.eval_interval=40",
         "--set", "train.sample_tokens=800", "--set", "train.progress=false"]


def test_a_wavenet_learns_tones_and_continues_a_prime(cli, sounds, tmp_path):
    run = tmp_path / "run"
    r = cli("train", "audio", "--data", sounds, "--out", run, "--max-steps", "80", *WAVENET, *TRAIN)
    assert r.returncode == 0, r.stderr
    assert "skipping" in r.stderr and "broken.wav" in r.stderr  # the bad file is named, the rest is used
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    bits = [row["val_bits_per_sample"] for row in rows if "val_bits_per_sample" in row]
    assert (run / "samples" / "step_000040.wav").is_file() and (run / "samples" / "step_000040.png").is_file()

    r = cli("eval", run)
    assert r.returncode == 0, r.stderr
    report = json.loads((run / "eval.json").read_text())
    # Tones are predictable from their past; a model that learned anything beats the histogram of samples.
    assert report["bits_per_sample"] < report["unigram_bits_per_sample"] - 1.0, (report, bits)

    prime = tmp_path / "prime.wav"
    soundfile.write(prime, sine(200, 22050, 0.5), 22050)  # another rate: resampled to the run's 8 kHz
    out = tmp_path / "cont.wav"
    r = cli("sample", run, "--prime", prime, "--seconds", "0.25", "--seed", "3", "--out", out)
    assert r.returncode == 0, r.stderr
    audio, rate = soundfile.read(out)
    assert rate == 8000 and len(audio) == 4000 + 2000  # the prime, then a quarter second
    assert out.with_suffix(".png").is_file()
    again = tmp_path / "again.wav"
    cli("sample", run, "--prime", prime, "--seconds", "0.25", "--seed", "3", "--out", again)
    assert np.array_equal(soundfile.read(again)[0], audio)  # same seed, same sound
    long = tmp_path / "long.flac"  # 700 s of silence in a few dozen KB: refused before it is decoded whole
    soundfile.write(long, np.zeros(8000 * 700, np.int16), 8000, subtype="PCM_16")
    r = cli("sample", run, "--prime", long, "--seconds", "0.25", "--out", tmp_path / "long_out.wav")
    assert r.returncode == 1 and "long.flac: a prime may last 600 s at most" in r.stderr
    assert not (tmp_path / "long_out.wav").exists()

    r = cli("sample", run, "--class", "low", "--out", tmp_path / "x.wav")
    assert r.returncode != 0 and "not conditioned" in r.stderr
    assert cli("report", run).returncode == 0
    assert (run / "index.html").read_text().count("<audio") == 2  # the first and last eval's sound, to listen to


def test_a_run_conditioned_on_subfolders_generates_each_class(cli, sounds, tmp_path):
    run = tmp_path / "run"
    r = cli("train", "audio", "--data", sounds, "--out", run, "--max-steps", "4", *WAVENET, *TRAIN,
            "--set", "data.audio.condition=true")
    assert r.returncode == 0, r.stderr
    assert json.loads((run / "data" / "classes.json").read_text()) == ["high", "low"]
    labels = json.loads((run / "data" / "labels" / "header.json").read_text())["splits"]
    sounds_split = json.loads((run / "data" / "header.json").read_text())["splits"]
    assert {k: v["tokens"] for k, v in labels.items()} == {k: v["tokens"] for k, v in sounds_split.items()}
    for label in ("low", "1"):
        r = cli("sample", run, "--class", label, "--seconds", "0.05", "--seed", "1", "--out", tmp_path / f"{label}.wav")
        assert r.returncode == 0, r.stderr
    assert np.array_equal(soundfile.read(tmp_path / "low.wav")[0], soundfile.read(tmp_path / "1.wav")[0])  # "low" is class 1
    r = cli("sample", run, "--class", "middle", "--out", tmp_path / "m.wav")
    assert r.returncode != 0 and "middle" in r.stderr and "high, low" in r.stderr


def test_bach_audio_renders_chorales_through_fluidsynth_once(tmp_path, monkeypatch):
    from conftest import require_tools

    import genlab.datasets.audio as audio
    import genlab.datasets.midi as midi
    from genlab.media.audio import find_soundfont

    require_tools("fluidsynth")
    if find_soundfont() is None:
        pytest.fail("fluidsynth is installed but no General MIDI soundfont was found (apt-get install fluid-soundfont-gm)")
    monkeypatch.setattr("music21.corpus.chorales.Iterator", lambda **kw: iter(["bach/bwv269", "bach/bwv347", "bach/bwv86.6"]))
    monkeypatch.setattr(audio, "BACH_AUDIO_CHORALES", 2)
    folder = audio.build_bach_audio(tmp_path, progress=False)
    wavs = sorted(folder.glob("*.wav"))
    assert [w.name for w in wavs] == ["bach_bwv269.wav", "bach_bwv347.wav"]
    info = soundfile.info(wavs[0])
    assert info.samplerate == 16000 and info.duration > 10
    assert np.abs(audio.read_audio(wavs[0], 16000)).max() > 0.01  # sound, not silence
    assert "fluidsynth" in (folder / ".complete").read_text()
    monkeypatch.setattr(midi, "chorale_to_midi", lambda work: pytest.fail("converted again"))
    monkeypatch.setattr("genlab.media.audio.render_wav", lambda *a: pytest.fail("rendered again"))
    assert audio.build_bach_audio(tmp_path, progress=False) == folder


def test_sound_files_no_sound_could_be_are_one_line_errors(tmp_path):
    """A float file of NaN broke mu-law encoding (an internal IndexError); a 1 Hz file took soxr a minute and
    7 GB to bring to 8 kHz."""
    from genlab.core.errors import GenlabError
    from genlab.datasets.audio import read_audio

    soundfile.write(tmp_path / "nan.wav", np.full(1000, np.nan), 8000, subtype="FLOAT")
    soundfile.write(tmp_path / "slow.wav", np.zeros(100), 1)
    with pytest.raises(GenlabError, match=r"^.*nan.wav: holds samples that are not numbers \(NaN or infinite\)$"):
        read_audio(tmp_path / "nan.wav", 8000)
    with pytest.raises(GenlabError, match=r"^.*slow.wav: a sample rate of 1 Hz is not a sound's \(at least 1,000 Hz\)$"):
        read_audio(tmp_path / "slow.wav", 8000)
