"""`genlab demo`, the first thing a user runs: each part trains offline and shows before and after
(one test per part, so the parts run side by side under xdist)."""

from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import require_tools
from genlab.workflows.demo import run_demo
from genlab.core.folders import marker_kind

CHORALES = ["bach/bwv269", "bach/bwv347", "bach/bwv153.1", "bach/bwv86.6"]


@pytest.fixture
def demo(tmp_path, capsys, monkeypatch):
    # The music part builds `bach` from music21's 371 chorales (90 s); four make the same dataset.
    monkeypatch.setattr("music21.corpus.chorales.Iterator", lambda **kw: iter(CHORALES))
    monkeypatch.setattr("genlab.workflows.demo.DEMO_FID_SAMPLES", 64)  # FID's cost is its sample count
    # The parts as they are, with smaller models: what is tested is the part's path, not its quality.
    small = {"name": "gpt", "n_layer": 1, "n_head": 2, "n_embd": 32}
    monkeypatch.setattr("genlab.workflows.demo.TEXT_MODEL", {"name": "lstm", "n_layer": 1, "n_embd": 32, "block_size": 64})
    monkeypatch.setattr("genlab.workflows.demo.MUSIC_MODEL", {**small, "block_size": 128})
    monkeypatch.setattr("genlab.workflows.demo.IMAGE_MODEL", {"name": "ddpm", "channels": 8, "channel_mult": [1, 2], "heads": 1})

    def run(part, pictures=None):
        page = run_demo(tmp_path / "demo", [part], seconds=1, progress=False, pictures=pictures)
        assert marker_kind(tmp_path / "demo") == "demo" and page == tmp_path / "demo" / "index.html"
        return tmp_path / "demo" / part, capsys.readouterr().out

    return run


class Sources(HTMLParser):
    """The src of every <img> and <audio> of a page."""

    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        if tag in ("img", "audio"):
            self.found.append((tag, dict(attrs)["src"]))


def page_sources(page: Path) -> list[tuple[str, Path]]:
    """(tag, file) of every picture and sound on the page; each must be a file beside it, not a URL."""
    parser = Sources()
    parser.feed(page.read_text())
    assert all(":" not in src for _, src in parser.found), parser.found  # no http:, data: or file: sources
    files = [(tag, (page.parent / src).resolve()) for tag, src in parser.found]
    missing = [str(f) for _, f in files if not f.is_file()]
    assert not missing, missing
    return files


@pytest.fixture
def browser():
    chromium = require_tools("chromium")["chromium"]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--allow-file-access-from-files"])
        yield b
        b.close()


def render(browser, page_path: Path) -> dict:
    """Open the page from disk; returns its console errors and how many of its images drew."""
    page = browser.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(page_path.resolve().as_uri())
    page.wait_for_load_state("load")
    drawn = page.evaluate("[...document.images].filter(i => i.complete && i.naturalWidth > 0).length")
    return {"errors": errors, "drawn": drawn, "images": page.evaluate("document.images.length")}


@pytest.mark.xdist_group("shared-caches")  # python-docs and the digits features, built once
def test_text_part(demo):
    folder, out = demo("text")
    assert "before training" in out and out.count("bits/char") == 2
    assert (folder / "model.safetensors").is_file() and (folder / "loss.png").is_file() and any((folder / "samples").iterdir())
    page = folder.parent / "index.html"
    assert page_sources(page) == [("img", (folder / "loss.png").resolve())]
    text = page.read_text()
    assert "before training" in text and "unigram entropy" in text and "Return the " in text


@pytest.mark.xdist_group("shared-caches")  # python-docs and the digits features, built once
def test_image_part(demo, browser, tmp_path):
    folder, out = demo("image", pictures=tmp_path / "img")
    assert (folder / "before.png").is_file() and (folder / "after.png").is_file()
    assert out.count("FID (genlab features)") == 2
    page = folder.parent / "index.html"
    shown = {f for _, f in page_sources(page)}
    assert {(folder / "before.png").resolve(), (folder / "after.png").resolve(), (folder / "run" / "loss.png").resolve()} <= shown
    assert any(f.parent.name == "samples" for f in shown)  # the grid of every eval, as a strip
    assert "FID (genlab features)" in page.read_text()
    seen = render(browser, page)
    assert seen["errors"] == [] and seen["drawn"] == seen["images"] == len(shown)
    from PIL import Image  # the README's pictures: the grids scaled up 4x

    assert Image.open(tmp_path / "img" / "digits_after.png").size == tuple(4 * n for n in Image.open(folder / "after.png").size)


def test_music_part(demo):
    folder, out = demo("music")
    music = list(folder.rglob("*.mid"))
    assert music and all(p.with_suffix(".png").is_file() and p.with_suffix(".wav").is_file() for p in music)
    shown = page_sources(folder.parent / "index.html")
    assert sorted(f.name for tag, f in shown if tag == "audio") == ["continuation.wav", "opening.wav"]
    assert {"continuation.png", "opening.png", "loss.png"} <= {f.name for tag, f in shown if tag == "img"}


def test_genlab_report_writes_a_page_for_any_run(tmp_path, cli, corpus_file):
    import genlab
    from conftest import tiny_config

    run = genlab.train(tiny_config(corpus_file, tmp_path / "run", max_steps=4, eval_interval=2), progress=False)
    r = cli("report", run.path)
    assert r.returncode == 0 and r.stdout.strip() == str(run.path / "index.html")
    text = (run.path / "index.html").read_text()
    assert [f.name for _, f in page_sources(run.path / "index.html")] == ["loss.png"]
    assert "sample at step 2" in text and "sample at step 4" in text and "kept weights: step" in text
    r = cli("report", tmp_path)
    assert r.returncode == 1 and r.stderr.strip() == f"error: {tmp_path}: not a genlab run folder (no config.toml)"


@pytest.mark.xdist_group("shared-caches")  # python-docs and the digits features, built once
def test_demo_seconds_bounds_a_whole_part(demo, tmp_path):
    """`genlab demo --seconds S`: the part's warm-up, training, samples and scores fit in S seconds of wall time
    (a first build of its dataset is outside the budget, and said); training gets what the rest leaves."""
    import json

    run_demo(tmp_path / "bounded", ["text"], seconds=15, progress=False)
    summary = json.loads((tmp_path / "bounded" / "summary.json").read_text())
    text = summary["text"]
    assert summary["bounded"] and text["steps"] > 1
    assert text["wall_seconds"] - text["one_time_seconds"] <= 15 + 2, text
    assert "a budget of 15 s" in (tmp_path / "bounded" / "index.html").read_text()
