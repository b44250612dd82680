"""The `genlab` command as a user meets it: help, one-line errors, and the train -> sample -> eval path."""

import json
import os
import subprocess
import sys

import pytest

from conftest import tiny_config


def genlab(*args, cwd=None):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "genlab", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_every_verb_has_help():
    top = genlab("--help")
    assert top.returncode == 0
    verbs = ["train", "sample", "eval", "demo"]
    for verb in verbs:
        assert verb in top.stdout
        r = genlab(verb, "--help")
        assert r.returncode == 0 and "Usage" in r.stdout, verb


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "text", "--data", "no/such/notes"], "no/such/notes: no such file or folder"),
        (["train", "text", "--set", "train.lr_max=3"], "train.lr_max: unknown key"),
        (["sample", "no/such/run"], "no/such/run: no such run directory"),
        (["eval", "no/such/run"], "no/such/run: no such run directory"),
        (["train", "text", "--model", "transformer"], "unknown family 'transformer'"),
    ],
)
def test_user_errors_are_one_line_without_traceback(args, message):
    r = genlab(*args)
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: {r.stderr.strip().removeprefix('error: ')}"
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_debug_shows_the_traceback():
    r = genlab("--debug", "sample", "no/such/run")
    assert r.returncode == 2 and "Traceback" in r.stderr


def test_train_sample_eval_from_the_command_line(tmp_path, corpus_file):
    cfg = tiny_config(corpus_file, tmp_path / "run")
    import tomli_w

    (tmp_path / "run.toml").write_bytes(tomli_w.dumps(cfg).encode())
    r = genlab("train", "text", "--config", str(tmp_path / "run.toml"), "--max-steps", "20", "--quiet", "--seed", "5")
    assert r.returncode == 0, r.stderr
    assert "run saved in" in r.stdout
    s1 = genlab("sample", str(tmp_path / "run"), "--prompt", "The", "--max-new-tokens", "30", "--seed", "1", "--temperature", "0.8", "--top-k", "5", "--top-p", "0.9")
    s2 = genlab("sample", str(tmp_path / "run"), "--prompt", "The", "--max-new-tokens", "30", "--seed", "1", "--temperature", "0.8", "--top-k", "5", "--top-p", "0.9")
    assert s1.returncode == 0 and s1.stdout == s2.stdout and s1.stdout.startswith("The")
    out = tmp_path / "samples.txt"
    r = genlab("sample", str(tmp_path / "run"), "--n", "3", "--max-new-tokens", "20", "--out", str(out), "--seed", "2")
    assert r.returncode == 0 and out.read_text().count("--- sample") == 3
    r = genlab("sample", str(tmp_path / "run"), "--steps", "50")
    assert r.returncode == 2 and "--steps does not apply" in r.stderr
    r = genlab("eval", str(tmp_path / "run"))
    assert r.returncode == 0 and "bits_per_char" in r.stdout
    results = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert results["bits_per_char"] > 0 and results["perplexity"] > 1
    saved = (tmp_path / "run" / "config.toml").read_text()
    assert "max_steps = 20" in saved and "seed = 5" in saved  # flags land in the resolved config
