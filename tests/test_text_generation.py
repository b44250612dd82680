"""Text end to end through the Python API: train, load, generate, stream, stop, evaluate."""

import json

import pytest

import genlab
from conftest import tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from conftest import make_corpus

    tmp = tmp_path_factory.mktemp("textrun")
    corpus = tmp / "corpus.txt"
    corpus.write_text(make_corpus())
    return genlab.train(tiny_config(corpus, tmp / "run", max_steps=150, lr=1e-2, eval_interval=75), progress=False)


def test_run_directory_holds_every_artifact(run):
    names = {p.name for p in run.path.iterdir()}
    assert {"config.toml", "model.safetensors", "tokenizer.json", "checkpoint", "metrics.jsonl", "samples", "loss.png"} <= names
    assert sorted(p.name for p in (run.path / "samples").iterdir()) == ["step_000075.txt", "step_000150.txt"]
    rows = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert any("val_loss" in r for r in rows) and any("tok_per_s" in r for r in rows)
    assert not list(run.path.rglob("*.tmp")) and not list(run.path.rglob("*.pkl"))


def test_training_learns_the_corpus(run):
    rows = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    first = next(r["loss"] for r in rows if "loss" in r)
    assert run.results["val_loss"] < 0.6 * first  # from ~ln(vocab) to well below it


def test_same_seed_same_text_and_streaming_matches(run):
    gen = genlab.load(run.path)
    (a,) = gen.generate("The cat", max_new_tokens=60, temperature=0.9, top_k=10, seed=3)
    assert a == gen.generate("The cat", max_new_tokens=60, temperature=0.9, top_k=10, seed=3)[0]
    pieces = list(gen.stream("The cat", max_new_tokens=60, temperature=0.9, top_k=10, seed=3))
    assert len(pieces) > 10 and "".join(pieces) == a.text
    batch = gen.generate("The cat", max_new_tokens=30, n=4, seed=1)
    assert len(batch) == 4 and len({s.text for s in batch}) > 1


def test_stop_string_ends_generation_and_is_left_out(run):
    gen = genlab.load(run.path)
    free = gen.generate("The", max_new_tokens=80, temperature=0, seed=0)[0].text
    stop = free[12:15]  # a string greedy decoding is known to produce
    (stopped,) = gen.generate("The", max_new_tokens=80, temperature=0, seed=0, stop=["zzz", stop])
    assert stopped.text == free[: free.index(stop)] and stopped.finish_reason == "stop"
    streamed = "".join(gen.stream("The", max_new_tokens=80, temperature=0, stop=["zzz", stop]))
    assert streamed == stopped.text


def test_eval_reports_loss_bits_and_perplexity_consistently(run):
    import math

    r = genlab.load(run.path).evaluate(samples=3, sample_tokens=40)
    assert r["bits_per_char"] == pytest.approx(r["loss"] / math.log(2))
    assert r["perplexity"] == pytest.approx(math.exp(r["loss"]))
    assert 0 < r["distinct_1"] <= 1 and 0 < r["distinct_2"] <= 1


def test_eval_on_other_data(run, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("The cat sat on the mat. " * 40)
    r = genlab.load(run.path).evaluate(data=str(other), samples=2, sample_tokens=10)
    assert r["data"] == str(other) and r["tokens"] == len(other.read_text()) - 1


def test_bpe_run_reports_bits_per_byte(tmp_path, corpus_file):
    cfg = tiny_config(corpus_file, tmp_path / "bpe", max_steps=10)
    cfg["tokenizer"] = {"kind": "bpe", "vocab_size": 300}
    run = genlab.train(cfg, progress=False)
    r = run.generator().evaluate(samples=2, sample_tokens=10)
    assert "bits_per_byte" in r and r["bits_per_byte"] > 0
    assert len(run.generator().generate("The", max_new_tokens=5, seed=0)[0].tokens) == 5


def test_lstm_trains_and_samples_through_the_same_api(tmp_path, corpus_file):
    cfg = tiny_config(corpus_file, tmp_path / "lstm", max_steps=10)
    cfg["model"] = {"name": "lstm", "n_layer": 1, "n_embd": 32, "block_size": 32}
    run = genlab.train(cfg, progress=False)
    (sample,) = run.generator().generate("The", max_new_tokens=25, seed=0)
    assert len(sample.text) == len(sample.tokens) == 25  # one character per token


def test_bfloat16_autocast_trains(tmp_path, corpus_file):
    run = genlab.train(tiny_config(corpus_file, tmp_path / "bf16", max_steps=40, dtype="bfloat16", lr=1e-2, eval_interval=20), progress=False)
    rows = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert all(map(lambda v: v == v, losses)) and losses[-1] < losses[0] - 0.5  # finite, and learning


def test_python_and_the_cli_agree_on_the_prompt(run, cli, tmp_path):
    """`sample.text` is the continuation alone (as OpenAI's API), `sample.full_text` is what `genlab sample` writes."""
    (sample,) = genlab.load(run.path).generate("The cat", max_new_tokens=30, seed=4)
    assert sample.full_text == "The cat" + sample.text and sample.prompt == "The cat"
    r = cli("sample", run.path, "--prompt", "The cat", "--max-new-tokens", "30", "--seed", "4", "--out", tmp_path / "s.txt")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "s.txt").read_text() == sample.full_text + "\n"


def test_the_two_sample_test_tells_texts_apart_only_when_they_differ():
    """Held-out halves of one corpus are indistinguishable (about 0.5); the corpus against its words shuffled is
    told apart almost always; the interval holds the accuracy."""
    import random

    from conftest import make_corpus
    from genlab.metrics.text import repetition_rate, two_sample_test

    lines = [line for line in make_corpus(60_000).splitlines() if line.strip()]
    same = two_sample_test(lines[:150], lines[150:300], seed=1)
    shuffled = []
    for i, line in enumerate(lines[300:450]):
        letters = list(line)
        random.Random(i).shuffle(letters)
        shuffled.append("".join(letters))
    apart = two_sample_test(lines[:150], shuffled, seed=1)
    assert 0.3 <= same["c2st_accuracy"] <= 0.7 and apart["c2st_accuracy"] >= 0.9, (same, apart)
    for r in (same, apart):
        assert r["c2st_interval"][0] <= r["c2st_accuracy"] <= r["c2st_interval"][1] and r["c2st_texts"] == 150
    assert repetition_rate(["a b c d a b c d a b c d"]) == pytest.approx(5 / 9) and repetition_rate(["a b c d e"]) == 0


def test_eval_c2st_compares_held_out_text_with_the_models_continuations(tmp_path, cli):
    from conftest import make_corpus

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_corpus(120_000))
    genlab.train(tiny_config(corpus, tmp_path / "run", max_steps=30), progress=False)
    r = cli("eval", tmp_path / "run", "--c2st", "--n", "40", "--temperature", "0.9")
    assert r.returncode == 0, r.stderr
    results = json.loads((tmp_path / "run" / "eval.json").read_text())
    low, high = results["c2st_interval"]
    assert results["c2st_texts"] == 40 and low <= results["c2st_accuracy"] <= high and results["c2st_temperature"] == 0.9
    assert results["c2st_tokens_per_text"] == 16  # block_size 32 less the 16-token prime
    assert {"real_distinct_4", "generated_distinct_4", "real_repetition", "generated_repetition"} <= set(results)
    r = cli("eval", tmp_path / "run", "--temperature", "0.9")
    assert r.returncode == 1 and "--temperature: only with --c2st" in r.stderr
