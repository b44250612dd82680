"""A model family from outside genlab (tests/plugin, a package with a `genlab.families` entry point), installed
as a user installs one, trains, samples, evaluates, serves and exports through the CLI as far as its spec says,
with no change to genlab's files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import make_corpus, serving

PLUGIN = Path(__file__).parent / "plugin"
GENLAB = str(Path(sys.executable).with_name("genlab"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The plugin package installed with pip into a folder of its own, put on the path of the commands below."""
    target = tmp_path_factory.mktemp("site")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--target", str(target), str(PLUGIN)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (target / "genlab_bigram-0.1.0.dist-info" / "entry_points.txt").is_file()
    path = os.pathsep.join(p for p in (str(target), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "GENLAB_API_KEY": ""}


def genlab(env, *args, cwd):
    return subprocess.run([GENLAB, *map(str, args)], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_a_plugin_family_trains_samples_evaluates_exports_and_serves(installed, tmp_path):
    (tmp_path / "corpus.txt").write_text(make_corpus(20_000))
    r = genlab(installed, "train", "text", "--data", "corpus.txt", "--model", "bigram", "--max-steps", "80",
               "--set", "train.eval_interval=40", "--out", "run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    evals = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if "\"val_loss" in line]
    assert len(evals) >= 2 and evals[-1]["val_loss"] < evals[0]["val_loss"]  # it learned

    r = genlab(installed, "sample", "run", "--max-new-tokens", "30", "--seed", "3", "--prompt", "The", cwd=tmp_path)
    again = genlab(installed, "sample", "run", "--max-new-tokens", "30", "--seed", "3", "--prompt", "The", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == again.stdout and len(r.stdout.strip()) > 3, r.stderr

    r = genlab(installed, "eval", "run", cwd=tmp_path)
    assert r.returncode == 0 and "bits_per_char" in r.stdout, r.stderr

    r = genlab(installed, "export", "run", "--format", "int8", "--backend", "torch", "--out", "int8", cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "int8" / "genlab_export.json").is_file(), r.stderr
    r = genlab(installed, "sample", "int8", "--max-new-tokens", "10", "--seed", "1", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip(), r.stderr
    r = genlab(installed, "export", "run", "--format", "onnx", "--out", "onnx", cwd=tmp_path)
    assert r.returncode == 1 and not (tmp_path / "onnx").exists()
    assert r.stderr.strip() == ("error: --format onnx: a bigram run does not export so (a bigram run exports with: "
                                "--format int8 --backend torch)")
    r = genlab(installed, "train", "text", "--data", "corpus.txt", "--model", "bigram", "--max-steps", "2",
               "--set", "train.carry_state=true", "--out", "carry", cwd=tmp_path)
    assert r.returncode == 1 and "only recurrent models carry a state (lstm, gru, rnn), not 'bigram'" in r.stderr

    with serving("run", env=installed, cwd=tmp_path) as url:
        models = httpx.get(url + "/v1/models", timeout=10).json()
        assert [m["id"] for m in models["data"]] == ["run"]
        answer = httpx.post(url + "/v1/completions", json={"model": "run", "prompt": "The", "max_tokens": 12,
                                                           "temperature": 0, "logprobs": 2}, timeout=60).json()
        choice = answer["choices"][0]
        assert answer["usage"]["completion_tokens"] == 12 and len(choice["logprobs"]["tokens"]) == 12, answer


def test_without_the_plugin_its_runs_are_one_line_errors(installed, tmp_path):
    (tmp_path / "corpus.txt").write_text(make_corpus(5_000))
    r = genlab(installed, "train", "text", "--data", "corpus.txt", "--model", "bigram", "--max-steps", "2", "--out", "run",
               cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    plain = {**installed, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    r = genlab(plain, "sample", "run", cwd=tmp_path)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "unknown family 'bigram'" in r.stderr, r.stderr


def test_a_plugin_task_trains_samples_evaluates_and_serves(installed, tmp_path):
    """The plugin's "lines" task (a `genlab.tasks` entry point): each distinct line is one example, a sample is one line."""
    syllables = ["al", "be", "ca", "do", "er", "fi", "go", "ha"]
    names = [(a + b + c).capitalize() for a in syllables for b in syllables for c in syllables]
    (tmp_path / "names.txt").write_text("\n".join(names * 3) + "\n")  # every name three times
    r = genlab(installed, "train", "lines", "--data", "names.txt", "--max-steps", "60", "--set", "model.n_layer=1",
               "--set", "model.n_embd=32", "--set", "model.n_head=2", "--out", "run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    header = json.loads((tmp_path / "run" / "data" / "header.json").read_text())
    stored = sum(split["units"] for split in header["splits"].values())
    assert stored == len("\n".join(names))  # its source: the distinct lines, once each

    r = genlab(installed, "sample", "run", "--seed", "2", "--max-new-tokens", "60", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.count("\n") == 1 and r.stdout.strip(), (r.stdout, r.stderr)  # one line
    r = genlab(installed, "eval", "run", cwd=tmp_path)
    assert r.returncode == 0 and "bits_per_char" in r.stdout, r.stderr

    with serving("run", env=installed, cwd=tmp_path) as url:
        answer = httpx.post(url + "/v1/completions", json={"model": "run", "prompt": "Ca", "max_tokens": 30, "seed": 1},
                            timeout=60).json()
        assert "\n" not in answer["choices"][0]["text"], answer  # the task's stop, applied by the server too

    plain = {**installed, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    r = genlab(plain, "train", "lines", "--data", "names.txt", "--out", "other", cwd=tmp_path)
    assert r.returncode == 1 and "unknown task 'lines'" in r.stderr and not (tmp_path / "other").exists(), r.stderr
