"""`remote:URL#MODEL`: a model behind an OpenAI-compatible endpoint (here a real `genlab serve`) where a run goes:
`genlab sample` and `genlab eval-code`; the key comes from a variable the user names and is written nowhere."""

import json
import os
import string
from pathlib import Path

import pytest

from conftest import serving, tiny_config
from test_code_eval import write_problems

KEY = "s3cret-remote-key"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import genlab

    from conftest import make_corpus

    root = tmp_path_factory.mktemp("remote")
    (root / "corpus.txt").write_text(make_corpus() + string.printable * 20)  # every character a problem holds
    genlab.train(tiny_config(root / "corpus.txt", root / "poet", max_steps=20), progress=False)
    with serving(root / "poet", env={**os.environ, "GENLAB_API_KEY": KEY}) as url:
        yield root, f"remote:{url}/v1#poet"


def test_sample_from_a_remote_model_equals_the_run_it_serves(served, cli, monkeypatch):
    root, remote = served
    monkeypatch.setenv("GENLAB_REMOTE_KEY_ENV", "MY_KEY")
    monkeypatch.setenv("MY_KEY", KEY)
    args = ["--prompt", "The", "--max-new-tokens", "24", "--seed", "3", "--no-stream"]  # the same seed, the same draws
    far, near = cli("sample", remote, *args), cli("sample", root / "poet", *args)
    assert far.returncode == 0 and near.returncode == 0, far.stderr + near.stderr
    assert far.stdout == near.stdout and far.stdout.strip() != "The"
    streamed = cli("sample", remote, "--prompt", "The", "--max-new-tokens", "24", "--seed", "3")
    assert streamed.returncode == 0 and streamed.stdout == near.stdout


def test_a_wrong_key_or_model_is_one_line_that_never_shows_the_key(served, cli, monkeypatch):
    root, remote = served
    monkeypatch.setenv("GENLAB_REMOTE_KEY_ENV", "MY_KEY")
    monkeypatch.setenv("MY_KEY", "wrong-" + KEY)
    r = cli("sample", remote, "--prompt", "The", "--max-new-tokens", "4")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "refused the key (401)" in r.stderr
    assert r.stdout == ""  # streamed: the prompt is not printed before the server has answered
    assert KEY not in r.stderr + r.stdout
    monkeypatch.setenv("MY_KEY", KEY)
    r = cli("sample", remote.replace("#poet", "#nobody"), "--prompt", "The", "--max-new-tokens", "4")
    assert r.returncode == 1 and "no model 'nobody' there" in r.stderr
    for bad in ("remote:ftp://x#m", "remote:http://[::1/v1#m", "remote:http://h:99999/v1#m", "remote:http://h/v1#"):
        r = cli("sample", bad)
        assert r.returncode == 1 and "a remote model is remote:URL#MODEL" in r.stderr, r.stderr


def test_eval_code_measures_a_remote_model_in_the_sandbox_and_writes_no_key(served, cli, monkeypatch, tmp_path):
    root, remote = served
    monkeypatch.setenv("GENLAB_REMOTE_KEY_ENV", "MY_KEY")
    monkeypatch.setenv("MY_KEY", KEY)
    problems = write_problems(tmp_path / "problems.jsonl")
    r = cli("eval-code", remote, "--problems", problems, "--n", "2", "--k", "1,2", "--max-new-tokens", "16",
            "--out", tmp_path / "out", "--quiet")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["model"] == "poet" and summary["problems"] == 3 and 0.0 <= summary["pass@1"] <= 1.0
    completions = [json.loads(line) for line in (tmp_path / "out" / "completions.jsonl").read_text().splitlines()]
    assert len(completions) == 3 * 2
    written = "".join(p.read_text(errors="replace") for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert KEY not in written


def test_distill_from_a_remote_teacher_trains_on_its_samples_and_top_logprobs(served, cli, monkeypatch, tmp_path):
    """The student's data are the remote teacher's seeded samples; its soft targets are the teacher's top_logprobs
    over the student's training windows (a character teacher: its tokens are the student's), exactly the served
    model's own distribution there. The key is written nowhere."""
    import numpy as np
    import torch

    import genlab
    from genlab.core.config import load_config
    from genlab.datasets.token_store import TokenStore
    from genlab.tokenizers import load_tokenizer

    root, remote = served
    monkeypatch.setenv("GENLAB_REMOTE_KEY_ENV", "MY_KEY")
    monkeypatch.setenv("MY_KEY", KEY)
    student = tmp_path / "student"
    r = cli("distill", "--teacher", remote, "--teacher-samples", "6", "--out", student, "--model", "lstm",
            "--set", "model.n_layer=1", "--set", "model.n_embd=32", "--set", "model.block_size=24", "--max-steps", "3",
            "--set", "train.eval_batches=1", "--quiet")
    assert r.returncode == 0, r.stderr
    config = load_config(student / "config.toml")
    source = Path(config.data.source)
    expected = [s.text for s in genlab.load(remote).generate("", n=6, seed=0, max_new_tokens=256)]
    assert source.read_bytes() == "\n\n".join(expected).encode() and all(expected)  # bytes: read_text turns \r into \n
    assert config.distill.teacher == remote and config.distill.cache_topk == 6

    # Window 0's cached targets are the teacher's own top log-probabilities at those positions.
    tokenizer = load_tokenizer(student / "tokenizer.json")
    window = TokenStore(student / "data").split("train")[:25].tolist()
    values = np.load(student / "teacher_cache" / "values.npy")[:24].astype(np.float32)
    indices = np.load(student / "teacher_cache" / "indices.npy")[:24]
    teacher = genlab.load(root / "poet", device="cpu")
    ids = torch.tensor([teacher.tokenizer.encode(tokenizer.decode(window))])
    with torch.no_grad():
        own = torch.log_softmax(teacher.model(ids)[0].float(), -1)  # (25, V): position j predicts token j + 1
    for j in range(24):
        held = np.isfinite(values[j])  # the 5 alternatives, and the drawn token when it is not among them
        assert held.sum() >= 5 and held[:5].all()
        chars = [tokenizer.decode([int(i)]) for i in indices[j][held]]
        theirs = own[j, [teacher.tokenizer.encode(c)[0] for c in chars]].numpy()
        assert np.allclose(values[j][held], theirs, atol=2e-2), (j, values[j], theirs)
        assert chars[0] == teacher.tokenizer.decode([int(own[j].argmax())])  # the likeliest first
    written = "".join(p.read_text(errors="replace") for p in student.rglob("*") if p.is_file() and p.suffix != ".npy")
    assert KEY not in written and "MY_KEY" not in written

    r = cli("distill", "--teacher", remote, "--teacher-logprobs", "0", "--out", tmp_path / "x", "--alpha", "0.5")
    assert r.returncode == 1 and "gives samples, not soft targets" in r.stderr
    r = cli("distill", "--teacher", remote, "--out", tmp_path / "y", "--cache-topk", "8")
    assert r.returncode == 1 and "--cache-topk: not with a remote teacher" in r.stderr


def test_compare_measures_a_remote_model_beside_the_run_it_serves(served, cli, monkeypatch, tmp_path):
    """The remote row is scored through the server's prompt logprobs on the runs' own val text: serving the same
    run, it must find the run's own bits per char (up to the few tokens that open each scored piece)."""
    root, remote = served
    monkeypatch.setenv("GENLAB_REMOTE_KEY_ENV", "MY_KEY")
    monkeypatch.setenv("MY_KEY", KEY)
    r = cli("compare", root / "poet", remote, "--out", tmp_path / "cmp", "--quiet")
    assert r.returncode == 0, r.stderr
    local, far = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert far["family"] == "remote" and far["scored_chars"] > 500 and far["sample_tokens_per_s"] > 0
    assert abs(far["val_bits_per_unit"] - local["val_bits_per_unit"]) < 0.05 * local["val_bits_per_unit"], (far, local)
    assert KEY not in (tmp_path / "cmp" / "compare.json").read_text() + r.stdout + r.stderr
    r = cli("compare", remote, "--out", tmp_path / "alone")
    assert r.returncode == 1 and "give a run too" in r.stderr and not (tmp_path / "alone").exists()


def test_a_teacher_without_per_character_logprobs_teaches_by_its_samples_alone(monkeypatch, tmp_path, capsys):
    """A server whose tokens are not characters (or that gives no prompt logprobs) is no source of soft targets
    for a character student: said once, and the student learns from its samples."""
    from types import SimpleNamespace

    from genlab.core.errors import GenlabError
    from genlab.sampling.endpoint import Endpoint, Unavailable
    from genlab.tasks.remote import soft_targets_offered

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat")
    spec = "remote:http://127.0.0.1:9/v1#m"
    bpe = SimpleNamespace(tokens=["the", " cat", " sat"], token_logprobs=[None, -1.0, -2.0],
                          top_logprobs=[None, {" cat": -1.0}, {" sat": -2.0}])
    chars = SimpleNamespace(tokens=list("the cat sat"), token_logprobs=[None] + [-1.0] * 10,
                            top_logprobs=[None] + [{"x": -1.0}] * 10)
    for answer, offered in ((bpe, False), (GenlabError("no prompt logprobs"), False), (chars, True)):
        def prompt_logprobs(self, prompts, top, answer=answer):
            if isinstance(answer, Exception):
                raise answer
            return [answer]
        monkeypatch.setattr(Endpoint, "prompt_logprobs", prompt_logprobs)
        assert soft_targets_offered(spec, corpus, 5) is offered
        said = capsys.readouterr().err
        assert ("learns from its samples alone" in said) is (not offered)

    def busy(self, prompts, top):  # a server that did not answer is not a server without logprobs
        raise Unavailable("http://127.0.0.1:9/v1: the server answered 503 after 5 retries (busy)")
    monkeypatch.setattr(Endpoint, "prompt_logprobs", busy)
    with pytest.raises(Unavailable, match="503"):
        soft_targets_offered(spec, corpus, 5)
    assert "learns from its samples alone" not in capsys.readouterr().err
