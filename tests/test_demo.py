"""`genlab demo`, the first thing a user runs: each part trains offline and shows before and after."""

from genlab.demo import run_demo
from genlab.folders import marker_kind

CHORALES = ["bach/bwv269", "bach/bwv347", "bach/bwv153.1", "bach/bwv86.6"]


def test_every_demo_part_trains_offline_and_shows_before_and_after(tmp_path, capsys, monkeypatch):
    # The music part builds `bach` from music21's 371 chorales (90 s); four make the same dataset.
    monkeypatch.setattr("music21.corpus.chorales.Iterator", lambda **kw: iter(CHORALES))
    monkeypatch.setattr("genlab.tasks.image.DEMO_FID_SAMPLES", 64)  # FID's cost is its sample count
    run_demo(tmp_path / "demo", ["text", "image", "music"], seconds=2, progress=False)
    out = capsys.readouterr().out
    assert marker_kind(tmp_path / "demo") == "demo"
    text = tmp_path / "demo" / "text"
    assert "before training" in out and "val loss" in out
    assert (text / "model.safetensors").is_file() and (text / "loss.png").is_file() and any((text / "samples").iterdir())
    image = tmp_path / "demo" / "image"
    assert (image / "before.png").is_file() and (image / "after.png").is_file()
    assert out.count("FID (genlab features)") == 2
    music = list((tmp_path / "demo" / "music").rglob("*.mid"))
    assert music and all(p.with_suffix(".png").is_file() and p.with_suffix(".wav").is_file() for p in music)
