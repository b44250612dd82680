"""Music: MIDI data, the miditok tokenizer, transposition, metrics, audio, and train -> sample -> eval."""

import sys
import time
import wave

import mido
import numpy as np
import pretty_midi
import pytest
import torch

import genlab
from genlab.core.config import MusicOptions
from genlab.core.errors import GenlabError
from genlab.metrics.music import Piece, music_metrics, pitch_class_histogram
from genlab.tokenizers import load_tokenizer, save_tokenizer
from genlab.tokenizers.midi import MidiTokenizer

CHORALES = ["bach/bwv269", "bach/bwv347", "bach/bwv153.1", "bach/bwv86.6"]


def write_midi(path, parts, drums=False, tempo=120.0):
    """parts: {program: [(pitch, start_s, end_s), ...]}; a drum track too when `drums`."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    for program, notes in parts.items():
        inst = pretty_midi.Instrument(program=program)
        inst.notes = [pretty_midi.Note(velocity=80, pitch=p, start=s, end=e) for p, s, e in notes]
        pm.instruments.append(inst)
    if drums:
        kit = pretty_midi.Instrument(program=0, is_drum=True)
        kit.notes = [pretty_midi.Note(velocity=100, pitch=36, start=i * 0.5, end=i * 0.5 + 0.1) for i in range(4)]
        pm.instruments.append(kit)
    pm.write(str(path))
    return path


PIANO = [(60 + i, i * 0.5, i * 0.5 + 0.5) for i in range(8)]  # quarter notes at 120 bpm: on miditok's grid
VIOLIN = [(76, 0.0, 1.0), (79, 1.0, 2.0)]


@pytest.fixture(scope="module")
def chorales(tmp_path_factory):
    from genlab.datasets.midi import write_chorales

    folder = tmp_path_factory.mktemp("chorales")
    assert write_chorales(folder / "nested", CHORALES, progress=False) == len(CHORALES)
    return folder


@pytest.fixture(scope="module")
def run(chorales, tmp_path_factory):
    out = tmp_path_factory.mktemp("musicrun") / "run"
    return genlab.train(music_config(chorales, out, "gpt"), progress=False)


def music_config(data, out, family, **train):
    widths = {"gpt": {"n_layer": 1, "n_head": 2, "n_embd": 32}, "fnet": {"n_layer": 1, "n_embd": 32},
              "lstm": {"n_layer": 1, "n_embd": 32}, "gru": {"n_layer": 1, "n_embd": 32}}[family]
    return {
        "task": "music", "out": str(out), "data": {"source": str(data)},
        "model": {"name": family, "block_size": 64, **widths},
        "train": {"max_steps": 20, "batch_size": 8, "lr": 1e-2, "warmup_steps": 2, "eval_interval": 20,
                  "checkpoint_interval": 20, "eval_batches": 2, "sample_tokens": 32, "progress": False, **train},
    }


# ---- data ---------------------------------------------------------------------------------


def test_corrupt_and_empty_files_are_skipped_with_a_warning_naming_each(tmp_path, capsys):
    from genlab.datasets.midi import usable_midi_files

    (tmp_path / "deep" / "er").mkdir(parents=True)
    good = write_midi(tmp_path / "deep" / "er" / "good.midi", {0: PIANO})
    (tmp_path / "corrupt.mid").write_bytes(b"MThd\x00\x00\x00\x06 not really midi")
    write_midi(tmp_path / "silent.mid", {0: []})
    (tmp_path / "notes.txt").write_text("not a midi file, not even looked at")
    assert usable_midi_files(tmp_path, progress=False) == [good]
    err = capsys.readouterr().err
    assert "skipping" in err and "corrupt.mid: not a readable MIDI file" in err
    assert "silent.mid: the file holds no notes" in err and "notes.txt" not in err


def test_a_dataset_with_no_usable_file_is_a_one_line_error(tmp_path):
    (tmp_path / "midi").mkdir()
    (tmp_path / "midi" / "a.mid").write_bytes(b"garbage")
    cfg = music_config(tmp_path / "midi", tmp_path / "run", "gpt")
    with pytest.raises(GenlabError, match=r"no usable MIDI file \(all 1 were corrupt or empty\)"):
        genlab.train(cfg, progress=False)
    assert not (tmp_path / "run").exists()  # a mistake leaves nothing behind
    (tmp_path / "midi" / "a.mid").unlink()
    with pytest.raises(GenlabError, match="no .mid or .midi files found"):
        genlab.train(cfg, progress=False)


def test_bach_is_built_once_from_the_music21_corpus(tmp_path, monkeypatch):
    import genlab.datasets.midi as midi

    monkeypatch.setattr("music21.corpus.chorales.Iterator", lambda **kw: iter(CHORALES[:2]))
    folder = midi.build_bach(tmp_path, progress=False)
    names = sorted(p.name for p in folder.glob("*.mid"))
    assert names == ["bach_bwv269.mid", "bach_bwv347.mid"]
    assert len(pretty_midi.PrettyMIDI(str(folder / names[0])).instruments) >= 4  # SATB
    monkeypatch.setattr(midi, "chorale_to_midi", lambda work: pytest.fail("converted again"))
    assert midi.build_bach(tmp_path, progress=False) == folder


# ---- tokenizer ----------------------------------------------------------------------------


def test_tokenizer_round_trips_merged_parts_and_drops_drums(tmp_path):
    path = write_midi(tmp_path / "song.mid", {0: PIANO, 40: VIOLIN}, drums=True)
    tok = MidiTokenizer.train([path], MusicOptions())
    score = tok.decode(tok.encode(path))
    assert len(score.tracks) == 1  # merged into one part
    notes = sorted((n.pitch, n.time / score.ticks_per_quarter, n.end / score.ticks_per_quarter) for n in score.tracks[0].notes)
    expected = sorted((p, s * 2, e * 2) for p, s, e in PIANO + VIOLIN)  # seconds -> quarters at 120 bpm
    assert notes == expected
    assert tok.vocab[tok.start_id] == "Bar_None"


def test_programs_choose_the_tracks_kept(tmp_path):
    path = write_midi(tmp_path / "song.mid", {0: PIANO, 40: VIOLIN}, drums=True)
    violin = MidiTokenizer.train([path], MusicOptions(programs=[40]))
    assert sorted(n.pitch for n in violin.decode(violin.encode(path)).tracks[0].notes) == [76, 79]
    apart = MidiTokenizer.train([path], MusicOptions(use_programs=True, programs=[0, 40, -1]))
    score = apart.decode(apart.encode(path))
    assert sorted((t.program, t.is_drum, len(t.notes)) for t in score.tracks) == [(0, False, 8), (0, True, 4), (40, False, 2)]


def test_saved_tokenizer_encodes_and_decodes_exactly_as_trained(tmp_path):
    path = write_midi(tmp_path / "song.mid", {0: PIANO, 40: VIOLIN})
    tok = MidiTokenizer.train([path], MusicOptions(tokenization="TSD", use_velocities=False))
    save_tokenizer(tok, tmp_path / "tokenizer.json")
    back = load_tokenizer(tmp_path / "tokenizer.json")
    assert (back.tokenization, back.vocab, back.start_id) == ("TSD", tok.vocab, tok.start_id)
    assert back.encode(path) == tok.encode(path)
    assert not any(name.startswith("Velocity") for name in back.vocab)


# ---- transposition ------------------------------------------------------------------------


class FixedWindows:
    block_size = 4

    def __init__(self, x):
        self.x = x

    def __next__(self):
        return self.x[:, :-1], self.x[:, 1:]

    def state_dict(self):
        return {"generator": torch.zeros(1)}

    def load_state_dict(self, state):
        pass


def test_transposition_shifts_pitches_of_a_window_together_and_nothing_else():
    from genlab.tasks.music import TransposedWindows

    vocab = ["Bar_None", "Position_0", "Pitch_59", "Pitch_60", "Pitch_61", "Pitch_62", "PitchDrum_36", "Pitch_108"]
    ids = {n: i for i, n in enumerate(vocab)}
    rows = [["Bar_None", "Pitch_61", "Position_0", "PitchDrum_36", "Pitch_60"],
            ["Pitch_108", "Pitch_60", "Bar_None", "Pitch_61", "Pitch_60"]]  # no Pitch_107/109: this row never moves
    x = torch.tensor([[ids[n] for n in r] for r in rows])
    windows = TransposedWindows(FixedWindows(x), vocab, 1, seed=0)
    seen = set()
    for _ in range(30):
        inp, tgt = next(windows)
        assert torch.equal(inp[:, 1:], tgt[:, :-1])  # input and target rows shifted alike
        first = [vocab[i] for i in torch.cat([inp[0], tgt[0, -1:]]).tolist()]
        shift = int(first[1].split("_")[1]) - 61
        assert first == ["Bar_None", f"Pitch_{61 + shift}", "Position_0", "PitchDrum_36", f"Pitch_{60 + shift}"]
        second = [vocab[i] for i in torch.cat([inp[1], tgt[1, -1:]]).tolist()]
        assert second == rows[1]
        seen.add(shift)
    assert seen == {-1, 0, 1}
    state = windows.state_dict()
    a = next(windows)[0]
    windows.load_state_dict(state)
    assert torch.equal(next(windows)[0], a)


# ---- metrics --------------------------------------------------------------------------------


def test_metrics_on_a_hand_made_piece():
    # Bar 1: a C major triad held 4 quarters; bar 2 silent; bar 3: B then F# (F# is outside C major).
    notes = np.array([[60, 0, 4], [64, 0, 4], [67, 0, 4], [71, 8, 9], [66, 9, 10]], dtype=float)
    piece = Piece(notes, downbeats=np.array([0.0, 4.0, 8.0]))
    reference = pitch_class_histogram([piece])
    m = music_metrics([piece, Piece(np.zeros((0, 3)), np.zeros(1))], reference)
    assert m["pitch_range"] == 11
    assert m["note_density"] == pytest.approx(5 / 10)
    assert m["polyphony"] == pytest.approx((16 * 3 + 8 * 1) / 24)
    assert m["scale_consistency"] == pytest.approx(5 / 5)  # G major holds C E G B F#
    assert m["pitch_class_distance"] == 0.0
    assert m["empty_bar_rate"] == pytest.approx((1 / 3 + 1.0) / 2)  # the empty piece counts as all empty
    assert m["notes_per_piece"] == 2.5
    off = Piece(np.array([[61, 0, 1]], dtype=float), np.zeros(1))
    assert music_metrics([off], reference)["pitch_class_distance"] == pytest.approx(1.0)


# ---- lengths --------------------------------------------------------------------------------


def test_seconds_and_bars_follow_tempo_and_time_signature_changes():
    import symusic

    from genlab.tasks.music import bar_tick, bars_of, cut, tick_at_second

    score = symusic.Score(480)
    score.tempos.extend([symusic.Tempo(0, 120.0), symusic.Tempo(960, 60.0)])  # 120 bpm for 2 quarters, then 60
    score.time_signatures.append(symusic.TimeSignature(0, 3, 4))
    track = symusic.Track("t", 0, False)
    track.notes.extend([symusic.Note(0, 480, 60, 80), symusic.Note(1200, 600, 62, 80), symusic.Note(3000, 100, 64, 80)])
    score.tracks.append(track)
    assert tick_at_second(score, 1.0) == 960 and tick_at_second(score, 2.0) == 1440
    assert bar_tick(score, 1) == 1440 and bar_tick(score, 2) == 2880 and bar_tick(score, 5) == 7200
    assert bars_of(score) == 3
    short = cut(score, 1440)
    assert [(n.time, n.duration, n.pitch) for n in short.tracks[0].notes] == [(0, 480, 60), (1200, 240, 62)]


# ---- audio ----------------------------------------------------------------------------------


def test_wav_comes_from_fluidsynth_when_installed_else_the_builtin_synth(tmp_path, monkeypatch):
    from genlab.media.audio import render_wav
    from genlab.datasets.midi import read_score

    path = write_midi(tmp_path / "song.mid", {0: PIANO})
    score = read_score(path)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert render_wav(score, path, tmp_path / "a.wav") == "built-in synthesizer"
    with wave.open(str(tmp_path / "a.wav")) as w:
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        assert w.getnchannels() == 1 and w.getframerate() == 22050
        assert 4.0 <= w.getnframes() / 22050 <= 4.3  # 8 quarter notes at 120 bpm, plus the release
    assert np.abs(frames).max() > 20000 and np.abs(frames[: 22050 // 2]).mean() > 500  # loud, and sound from the start
    # A stand-in fluidsynth that records its arguments and writes the -F file.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "fluidsynth"
    fake.write_text(f"#!{sys.executable}\nimport sys\nargs = sys.argv[1:]\n"
                    "open(args[args.index('-F') + 1], 'wb').write(b'RIFF' + ' '.join(args).encode())\n")
    fake.chmod(0o755)
    (tmp_path / "gm.sf2").write_bytes(b"sf2")
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("GENLAB_SOUNDFONT", str(tmp_path / "gm.sf2"))
    assert render_wav(score, path, tmp_path / "b.wav") == "fluidsynth (gm.sf2)"
    written = (tmp_path / "b.wav").read_bytes()
    assert written.startswith(b"RIFF") and written.endswith(f"{tmp_path / 'gm.sf2'} {path}".encode())
    assert not list(tmp_path.glob(".*tmp*"))


def test_the_real_fluidsynth_renders_a_score_with_a_general_midi_soundfont(tmp_path, monkeypatch):
    from conftest import require_tools
    from genlab.media.audio import find_soundfont, render_wav
    from genlab.datasets.midi import read_score

    require_tools("fluidsynth")  # with Debian's fluid-soundfont-gm (.ci/run installs both)
    monkeypatch.delenv("GENLAB_SOUNDFONT", raising=False)
    soundfont = find_soundfont()
    if soundfont is None:
        pytest.fail("fluidsynth is installed but no General MIDI soundfont was found (apt-get install fluid-soundfont-gm)")
    path = write_midi(tmp_path / "song.mid", {0: PIANO})
    assert render_wav(read_score(path), path, tmp_path / "song.wav") == f"fluidsynth ({soundfont.name})"
    with wave.open(str(tmp_path / "song.wav")) as w:
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        seconds = w.getnframes() / w.getframerate()
    assert w.getframerate() == 44100 and 4.0 <= seconds <= 8.0  # 8 quarter notes at 120 bpm, plus release and reverb
    assert np.abs(frames).max() > 3000  # a sound, not silence


def test_a_score_fluidsynth_would_render_forever_falls_back_to_the_built_in_synthesizer(tmp_path, monkeypatch):
    """A hundred notes struck at once overflow FluidSynth's event queue; their note-offs are lost and it writes
    WAV until it is killed (650 MB in 20 s; the render's timeout was 600 s). Now it is stopped once its file
    passes the piece's length plus a release tail, and the built-in synthesizer writes the WAV."""
    import symusic
    from conftest import require_tools
    from genlab.media.audio import find_soundfont, render_wav

    require_tools("fluidsynth")
    monkeypatch.delenv("GENLAB_SOUNDFONT", raising=False)
    if find_soundfont() is None:
        pytest.fail("fluidsynth is installed but no General MIDI soundfont was found (apt-get install fluid-soundfont-gm)")
    score = symusic.Score(480)
    track = symusic.Track(program=0)
    for _ in range(100):  # one key struck a hundred times at once, as a model's output can hold it
        track.notes.append(symusic.Note(0, 480, 60, 100))
    score.tracks.append(track)
    path = tmp_path / "cluster.mid"
    path.write_bytes(bytes(score.dumps_midi()))
    t = time.perf_counter()
    assert render_wav(score, path, tmp_path / "cluster.wav") == "built-in synthesizer"
    assert time.perf_counter() - t < 30
    with wave.open(str(tmp_path / "cluster.wav")) as w:
        assert w.getnframes() / w.getframerate() < 5  # half a second of notes, and their release
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster.mid", "cluster.wav"]  # no partial file left


# ---- end to end ------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["lstm", "gru", "fnet"])
def test_every_sequence_family_trains_on_music(chorales, tmp_path, family):
    r = genlab.train(music_config(chorales, tmp_path / "run", family, max_steps=6, eval_interval=6), progress=False)
    assert r.results["step"] == 6 and r.results["val_loss"] < np.log(load_tokenizer(r.path / "tokenizer.json").vocab_size)
    assert (r.path / "samples" / "step_000006.txt").read_text().strip()


def test_a_music_run_defaults_to_the_midi_tokenizer_and_learns(run):
    assert run.config.tokenizer.kind == "midi"
    assert load_tokenizer(run.path / "tokenizer.json").kind == "midi"
    first = next(r["loss"] for r in genlab.core.runs.RunDir(run.path).read_metrics() if "loss" in r)
    assert run.results["val_loss"] < 0.75 * first


def test_primes_that_would_cost_hours_are_one_line_errors(run, tmp_path, cli):
    """A prime at one microsecond a beat lasts a moment as written, but the tokenizer holds tempos to its range:
    the continuation's files held it for hours (FluidSynth wrote a 14-hour WAV for one request). And 200,000
    tempo changes cost the tokenizer 10 s per read."""
    import symusic

    def prime(name, tempos, notes):
        score = symusic.Score(480)
        score.tempos.extend([symusic.Tempo(0, 1e8)] if tempos == "fast" else [symusic.Tempo(i, 120.0) for i in range(tempos)])
        track = symusic.Track(program=0)
        track.notes.extend(symusic.Note(k * 1_000_000, 1_000_000, 60, 80) for k in range(notes))
        score.tracks.append(track)
        (tmp_path / name).write_bytes(bytes(score.dumps_midi()))
        return tmp_path / name

    fast, flood = prime("fast.mid", "fast", 50), prime("flood.mid", 200_000, 1)
    for path, says in [(fast, "at the tempos this run's tokenizer keeps"), (flood, "holds 200,000 tempo")]:
        t = time.perf_counter()
        r = cli("sample", run.path, "--prime", path, "--seconds", "1", "--out", tmp_path / f"{path.stem}-out.mid")
        assert r.returncode != 0 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert time.perf_counter() - t < 10 and not (tmp_path / f"{path.stem}-out.wav").exists()


def test_primed_continuation_by_seconds_writes_mid_png_wav_that_reload(run, chorales, tmp_path, cli):
    from genlab.media.audio import playable, save_midi
    from genlab.datasets.midi import read_score
    from genlab.tasks.music import bar_tick, cut, seconds_of

    chorale = read_score(sorted(chorales.rglob("*.mid"))[0])
    theme = cut(chorale, bar_tick(chorale, 2))
    save_midi(theme, tmp_path / "theme.mid")
    gen = genlab.load(run.path)
    r = cli("sample", run.path, "--prime", tmp_path / "theme.mid", "--seconds", "3", "--temperature", "0.9", "--seed", "1",
            "--out", tmp_path / "cont.mid")
    assert r.returncode == 0, r.stderr
    assert {p.name for p in tmp_path.iterdir()} >= {"cont.mid", "cont.png", "cont.wav"}
    prime_end = seconds_of(gen.tokenizer.decode(gen.encode_prompt(tmp_path / "theme.mid")))
    pm = pretty_midi.PrettyMIDI(str(tmp_path / "cont.mid"))
    assert pm.get_end_time() <= prime_end + 3.0 + 1e-3
    note_ons = [m for t in mido.MidiFile(str(tmp_path / "cont.mid")).tracks for m in t if m.type == "note_on" and m.velocity > 0]
    assert len(note_ons) == sum(len(i.notes) for i in pm.instruments) > 0
    theme_notes = sorted((n.start, n.pitch) for i in pretty_midi.PrettyMIDI(str(tmp_path / "theme.mid")).instruments for n in i.notes)
    out_notes = sorted((n.start, n.pitch) for i in pm.instruments for n in i.notes if n.start < prime_end - 1e-6)
    assert [p for _, p in out_notes] == [p for _, p in theme_notes]  # the prime comes first, unchanged
    (again,) = gen.generate(tmp_path / "theme.mid", seconds=3.0, temperature=0.9, seed=1)
    assert bytes(playable(again.score).dumps_midi()) == (tmp_path / "cont.mid").read_bytes()


def test_from_scratch_by_tokens_and_bars(run, tmp_path, cli):
    from genlab.tasks.music import bars_of

    gen = genlab.load(run.path)
    assert cli("sample", run.path, "--n", "2", "--max-new-tokens", "80", "--seed", "0", "--out", tmp_path / "s.mid").returncode == 0
    for name in ("s_1", "s_2"):
        assert pretty_midi.PrettyMIDI(str(tmp_path / f"{name}.mid")).instruments and mido.MidiFile(str(tmp_path / f"{name}.mid")).tracks
        assert (tmp_path / f"{name}.png").stat().st_size > 1000 and (tmp_path / f"{name}.wav").stat().st_size > 44
    first, second = gen.generate(n=2, max_new_tokens=40, seed=0)
    assert len(first.tokens) == 40 and first.tokens == gen.generate(max_new_tokens=40, seed=0)[0].tokens
    assert second.tokens == gen.generate(max_new_tokens=40, seed=1)[0].tokens  # sample i: seed + i
    (sample,) = gen.generate(bars=2, seed=0, temperature=0.9)
    assert bars_of(sample.score) <= 2


def test_eval_gives_music_metrics_beside_the_held_out_reference(run):
    r = genlab.load(run.path).evaluate(samples=3, sample_tokens=64)
    for key in ("pitch_class_distance", "pitch_range", "note_density", "polyphony", "scale_consistency", "empty_bar_rate"):
        assert key in r and f"heldout_{key}" in r
    assert r["data"] == "val split" and r["loss"] > 0 and r["pieces"] == 3
    assert 2.0 < r["heldout_polyphony"] <= 4.5  # four-voice chorales
    assert r["heldout_empty_bar_rate"] == 0.0


def test_music_user_errors_are_one_line(run, tmp_path, cli):
    (tmp_path / "bad.mid").write_bytes(b"nope")
    r = cli("sample", run.path, "--prime", tmp_path / "bad.mid")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith(f"error: {tmp_path / 'bad.mid'}: not a readable MIDI file (")
    header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big") + (0).to_bytes(2, "big")
    track = b"\x00\x90\x3c\x64\x83\x60\x80\x3c\x00\x00\xff\x2f\x00"  # one note, then the end
    (tmp_path / "zero.mid").write_bytes(header + b"MTrk" + len(track).to_bytes(4, "big") + track)  # 0 ticks per quarter
    r = cli("sample", run.path, "--prime", tmp_path / "zero.mid")  # miditok divided by it: an internal error
    assert r.returncode == 1 and r.stderr == f"error: {tmp_path / 'zero.mid'}: not a readable MIDI file (0 ticks per quarter note)\n"
    gen = genlab.load(run.path)
    with pytest.raises(GenlabError, match="give one length"):
        gen.generate(seconds=2, bars=2)
    with pytest.raises(GenlabError, match="tokenizer.kind: music runs use the midi tokenizer, not 'bpe'"):
        genlab.train({**music_config(tmp_path, tmp_path / "r", "gpt"), "tokenizer": {"kind": "bpe"}}, progress=False)


def test_sample_max_time_writes_the_music_made_so_far(run, cli, tmp_path):
    r = cli("sample", str(run.path), "--seconds", "100000", "--max-time", "1", "--out", str(tmp_path / "p.mid"))
    assert r.returncode == 0, r.stderr
    assert "p.mid stopped at --max-time 1 s, shorter than asked" in r.stderr
    assert all((tmp_path / f"p.{x}").is_file() for x in ("mid", "png", "wav"))


def test_broken_model_output_does_not_become_hours_of_audio(tmp_path):
    """An untrained model's tokens can decode to tempo and meter events at overflowed times (seen: +-2^31
    ticks, unsorted); written as they are they made a 2^28-tick MIDI file and a 12 GB WAV. The writer keeps
    the music and drops what no music has."""
    from symusic import Note, Score, Tempo, TimeSignature, Track

    from genlab.media.audio import write_music

    score = Score(16)
    track = Track(program=0)
    track.notes.extend([Note(0, 16, 60, 80), Note(16, 16, 64, 80), Note(-5, 4, 62, 80), Note(2**30, 4, 67, 80)])
    score.tracks.append(track)
    score.tempos.extend([Tempo(0, 120.0), Tempo(2**30, 90.0), Tempo(-(2**31) + 3, 60.0)])
    score.time_signatures.extend([TimeSignature(0, 4, 4), TimeSignature(1879048233, 6, 8)])
    paths, _ = write_music(score, tmp_path / "broken.mid")
    written = pretty_midi.PrettyMIDI(str(paths[0]))
    assert [(n.pitch, round(n.start, 2)) for n in written.instruments[0].notes] == [(60, 0.0), (64, 0.5)]
    assert written.get_end_time() == pytest.approx(1.0, abs=0.01)
    with wave.open(str(paths[2])) as w:
        assert w.getnframes() / w.getframerate() < 5  # the sound of one second, and a renderer's release tail
