"""Every shell example in README.md and docs/*.md runs: each `genlab ...` line of a code block is run
in order, in one working folder per page, through the real CLI (in this process, at tiny sizes), or is
listed in SKIP with the reason. A new example that is neither fails here until it is classified."""

import gzip
import json
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from conftest import make_corpus

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Examples that need what a test machine cannot have, by the start of the command line.
SKIP = {
    "genlab train code --data ~/src/": "a code base in the user's home folder (tests/test_code_task.py trains code runs)",
    "genlab sample runs/mycode": "needs the code run above",
    "genlab eval-code runs/mycode": "needs the code run above",
    "genlab sample hf:/models/": "a downloaded Hugging Face model (tests/test_hf.py uses a tiny local one)",
    "genlab finetune-hf hf:/models/": "a downloaded Hugging Face model (tests/test_hf.py fine-tunes a tiny one)",
    "genlab compare runs/a runs/b": "placeholder run folders (tests/test_zoo.py compares finished runs)",
    "genlab train text --config recipes/tinyshakespeare-lstm.toml": "recipes train for minutes; every recipe trains 2 steps in tests/test_recipes.py",
    "genlab export runs/notes --format web": "fetches onnxruntime-web with npm (tests/test_export.py exports a page and generates in Chromium)",
    "genlab rl runs/mycode": "needs the code run of the README (tests/test_rl.py fine-tunes a run for a reward)",
    "genlab search hf:/models/": "a downloaded CLIP (tests/test_clip.py uses a tiny local one)",
    "genlab eval hf:/models/": "a downloaded CLIP (tests/test_clip.py evaluates a tiny local one)",
    "genlab eval runs/shakespeare --c2st": "needs a trained Shakespeare run (tests/test_text_generation.py runs --c2st on a tiny one)",
    "genlab serve": "a server runs until stopped (tests/test_serve.py drives one with the openai client and Chromium)",
    "genlab sample remote:": "a server running elsewhere (tests/test_remote.py starts genlab serve and samples it)",
    "genlab eval-code remote:": "a server running elsewhere (tests/test_remote.py runs eval-code against genlab serve)",
    "genlab compare runs/poet remote:": "needs the server above (tests/test_remote.py compares a served run with itself)",
    "genlab data prepare /shared/exports/records.jsonl": "a running Dask cluster and a shared disk (tests/test_prep_dask.py runs a local two-worker cluster)",
    "genlab train image --data hf:my_images": "a dataset of the user's (tests/test_records.py saves one and trains on it)",
    "genlab train image --data photos.csv": "a table of the user's photos (tests/test_records.py writes one and trains on it)",
    "genlab train text --data hf:my_dataset": "a dataset in the user's Hugging Face cache (tests/test_records.py saves one and trains on it)",
    "genlab train text --data notes/ --model bigram": "needs the plugin package installed (tests/test_plugins.py installs it and runs these)",
    "genlab sample runs/bigram": "needs the plugin run above (tests/test_plugins.py)",
    "genlab eval runs/bigram": "needs the plugin run above (tests/test_plugins.py)",
    "genlab export runs/bigram": "needs the plugin run above (tests/test_plugins.py)",
}

# Shrinks a family to test size; appended after the example's own flags, so it wins.
TINY_MODEL = {
    "gpt": ["model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.block_size=32"],
    "lstm": ["model.n_layer=1", "model.n_embd=32", "model.block_size=32"],
    "gru": ["model.n_layer=1", "model.n_embd=32", "model.block_size=32"],
    "fnet": ["model.n_layer=1", "model.n_embd=32", "model.block_size=32"],
    "ngram": ["model.order=3"],
    "ddpm": ["model.channels=8", "model.heads=1", "model.timesteps=50", "data.image.grid_samples=4"],
    "gan": ["model.hidden=[32]", "data.image.grid_samples=4"],
    "dcgan": ["model.channels=8", "data.image.grid_samples=4"],
    "vae": ["model.channels=8", "data.image.grid_samples=4"],
    "clip": ["model.embed_dim=16", "model.image_channels=8", "model.text_width=16", "model.text_layers=1"],
    "stylegan": ["model.channels=8", "model.latent_dim=16", "model.mapping_layers=2", "data.image.grid_samples=4"],
    "pixelcnn": ["model.channels=8", "model.n_layers=2", "model.head_channels=16", "data.image.grid_samples=4"],
    "wavenet": ["model.layers_per_stack=3", "model.stacks=1", "model.residual_channels=8", "model.skip_channels=8",
                "model.block_size=256", "data.audio.sample_rate=8000"],
}
DEFAULT_FAMILY = {"text": "gpt", "code": "gpt", "music": "gpt", "audio": "wavenet", "image": "ddpm", "clip": "clip"}


def examples(page: Path) -> list[str]:
    """The `genlab` command lines of the page's code blocks, continuation lines joined, comments cut."""
    found, block, pending = [], False, ""
    for line in page.read_text().splitlines():
        if line.strip().startswith("```"):
            block = not block
            continue
        if not block:
            continue
        line = pending + line.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if line.startswith("genlab "):
            found.append(re.sub(r"\s+#.*$", "", line).strip())
    return found


def tiny(args: list[str], workspace: Path) -> list[str]:
    """The example's arguments with tiny budgets appended."""
    if args[0] in ("train", "distill"):
        family = _flag(args, "--model") or _recipe_family(args, workspace) or DEFAULT_FAMILY[args[1]]
        sets = ["train.eval_batches=1", "train.sample_tokens=4", "train.eval_interval=1000", "train.batch_size=8",
                *TINY_MODEL[family]]
        return [*args, "--max-steps", "2", *(x for s in sets for x in ("--set", s))]
    if args[0] == "sweep":
        family = _flag(args, "--model") or DEFAULT_FAMILY[args[1]]
        sets = ["train.eval_batches=1", "train.sample_tokens=4", "train.batch_size=8", *TINY_MODEL[family]]
        args = [a if a != _flag(args, "--trials") else "2" for a in args]
        return [*args, "--max-steps", "2", *(x for s in sets for x in ("--set", s))]
    if args[0] == "rl":
        return [*args, "--episodes", "5", "--steps", "2", "--batch", "2", "--max-new-tokens", "8"]
    if args[0] == "compare":
        return [*(a if a != "120" else "1" for a in args), "--set", "train.max_steps=3", "--set", "train.eval_batches=1",
                "--set", "train.sample_tokens=4", "--n", "16"]
    if args[0] == "eval":
        config = workspace / args[1] / "config.toml"
        if config.is_file() and 'task = "clip"' in config.read_text():
            return args
        image = config.is_file() and 'task = "image"' in config.read_text()
        return [*args, *(["--n", "32", "--steps", "5"] if image else ["--n", "4"])]
    if args[0] == "sample":
        args = list(args)
        config = workspace / args[1] / "config.toml"
        audio = config.is_file() and 'task = "audio"' in config.read_text()
        for flag, most in (("--n", 8), ("--seconds", 0.1 if audio else 2), ("--max-new-tokens", 40)):
            if flag in args:
                i = args.index(flag) + 1
                args[i] = str(min(float(args[i]), most)) if flag == "--seconds" else str(min(int(args[i]), most))
    return args


def _flag(args, name):
    return args[args.index(name) + 1] if name in args else None


def _recipe_family(args, workspace):
    config = _flag(args, "--config")
    if config is None:
        return None
    import tomllib

    return tomllib.loads((workspace / config).read_text())["model"]["name"]


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A user's folder holding what the examples name: notes, a CSV, a theme, problems, recipes."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "ideas.md").write_text(make_corpus(6000, seed=1))
    (tmp_path / "notes" / "diary.txt").write_text(make_corpus(6000, seed=2))
    for name in ("other.txt", "FILE", "tinyshakespeare.txt"):
        (tmp_path / name).write_text(make_corpus(8000, seed=3))
    (tmp_path / "reviews.jsonl").write_text("".join(json.dumps({"body": make_corpus(200, seed=i)}) + "\n" for i in range(30)))
    rows = "".join(f'"{make_corpus(60, seed=i).strip()}",{"ab"[i % 2]},{i},{i * i}\n' for i in range(60))
    (tmp_path / "raw.csv").write_text("text,label,feature1,feature2\n" + rows)
    orders = "".join(f"{i},{i % 12 + 1}/{i % 28 + 1}/2024 09:30,{('open', 'shipped')[i % 2]}\n" for i in range(40))
    (tmp_path / "orders.csv").write_text("id,shipped_at,status\n" + orders)
    problem = {"task_id": "t/0", "prompt": "def one():\n", "entry_point": "one",
               "test": "def check(f):\n    assert f() == 1\n", "canonical_solution": "    return 1\n"}
    with gzip.open(tmp_path / "HumanEval.jsonl.gz", "wt") as f:
        f.write(json.dumps(problem) + "\n")
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    import pretty_midi

    theme = pretty_midi.PrettyMIDI(initial_tempo=120)
    piano = pretty_midi.Instrument(program=0)
    piano.notes = [pretty_midi.Note(velocity=80, pitch=60 + i, start=i * 0.5, end=i * 0.5 + 0.5) for i in range(8)]
    theme.instruments.append(piano)
    theme.write(str(tmp_path / "my_theme.mid"))
    import numpy as np
    import soundfile

    (tmp_path / "my_sounds").mkdir()
    tone = lambda freq, rate: (0.4 * np.sin(2 * np.pi * freq * np.arange(rate) / rate)).astype(np.float32)  # noqa: E731
    soundfile.write(tmp_path / "my_sounds" / "low.wav", tone(220, 8000), 8000)
    soundfile.write(tmp_path / "my_sounds" / "high.flac", tone(880, 16000), 16000)
    soundfile.write(tmp_path / "clip.wav", tone(330, 22050)[:5000], 22050)
    # `bach` is built from music21's 371 chorales (90 s); four of them make the same dataset, faster.
    monkeypatch.setattr("music21.corpus.chorales.Iterator",
                        lambda **kw: iter(["bach/bwv269", "bach/bwv347", "bach/bwv153.1", "bach/bwv86.6"]))
    return tmp_path


def _skip_reason(command: str) -> str | None:
    return next((reason for start, reason in SKIP.items() if command.startswith(start)), None)


@pytest.mark.xdist_group("shared-caches")  # python-docs and the digits features, built once
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_example_runs_or_says_why_not(page, workspace, cli):
    ran = 0
    for command in examples(page):
        if _skip_reason(command):
            continue
        r = cli(*tiny(shlex.split(command)[1:], workspace))
        assert r.returncode == 0, f"{page.name}: `{command}` exited {r.returncode}: {r.stderr[-800:]}"
        ran += 1
    assert ran or all(map(_skip_reason, examples(page)))  # a page of examples that need a plugin runs none here


def test_every_skip_names_an_example_that_exists():
    commands = [c for page in PAGES for c in examples(page)]
    for start in SKIP:
        assert any(c.startswith(start) for c in commands), f"SKIP lists `{start}`, which no page shows any more"


def test_benchmarks_md_is_generated_from_the_stored_results():
    import subprocess

    r = subprocess.run([sys.executable, str(ROOT / "bench" / "report.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, "BENCHMARKS.md differs from `python bench/report.py` output: rerun it"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_picture_a_page_shows_is_committed(page):
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text())
    missing = [link for link in links if not (page.parent / link).is_file()]
    assert not missing and all("://" not in link for link in links), missing
