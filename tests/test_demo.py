"""`genlab demo`, the first thing a user runs: each part trains offline and shows before and after
(one test per part, so the parts run side by side under xdist)."""

import pytest

from genlab.demo import run_demo
from genlab.folders import marker_kind

CHORALES = ["bach/bwv269", "bach/bwv347", "bach/bwv153.1", "bach/bwv86.6"]


@pytest.fixture
def demo(tmp_path, capsys, monkeypatch):
    # The music part builds `bach` from music21's 371 chorales (90 s); four make the same dataset.
    monkeypatch.setattr("music21.corpus.chorales.Iterator", lambda **kw: iter(CHORALES))
    monkeypatch.setattr("genlab.demo.DEMO_FID_SAMPLES", 64)  # FID's cost is its sample count
    # The parts as they are, with smaller models: what is tested is the part's path, not its quality.
    small = {"name": "gpt", "n_layer": 1, "n_head": 2, "n_embd": 32}
    monkeypatch.setattr("genlab.demo.TEXT_MODEL", {**small, "block_size": 64})
    monkeypatch.setattr("genlab.demo.MUSIC_MODEL", {**small, "block_size": 128})
    monkeypatch.setattr("genlab.demo.IMAGE_MODEL", {"name": "ddpm", "channels": 8, "channel_mult": [1, 2], "heads": 1})

    def run(part):
        run_demo(tmp_path / "demo", [part], seconds=1, progress=False)
        assert marker_kind(tmp_path / "demo") == "demo"
        return tmp_path / "demo" / part, capsys.readouterr().out

    return run


@pytest.mark.xdist_group("shared-caches")  # python-docs and the digits features, built once
def test_text_part(demo):
    folder, out = demo("text")
    assert "before training" in out and "val loss" in out
    assert (folder / "model.safetensors").is_file() and (folder / "loss.png").is_file() and any((folder / "samples").iterdir())


@pytest.mark.xdist_group("shared-caches")  # python-docs and the digits features, built once
def test_image_part(demo):
    folder, out = demo("image")
    assert (folder / "before.png").is_file() and (folder / "after.png").is_file()
    assert out.count("FID (genlab features)") == 2


def test_music_part(demo):
    folder, out = demo("music")
    music = list(folder.rglob("*.mid"))
    assert music and all(p.with_suffix(".png").is_file() and p.with_suffix(".wav").is_file() for p in music)
