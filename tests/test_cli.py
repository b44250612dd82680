"""The `genlab` command as a user meets it: help and usage for every command, one-line errors with exit
status 1 (2 for usage), no traceback unless asked, and the train -> sample -> eval path.

Most cases call the CLI's main() in this process (the `cli` fixture); the tests named `..._entry_point`
start the installed command itself, once each."""

import json
import os
import stat
import subprocess
import sys

import pytest

from conftest import tiny_config

# Every command and subcommand, by its exact name.
COMMANDS = [["train"], ["sample"], ["eval"], ["demo"], ["compare"], ["eval-code"], ["finetune-hf"], ["serve"], ["export"], ["bench"], ["report"], ["data"],
            ["data", "prepare"], ["data", "report"]]


def genlab(*args, cwd, env=None):
    """The real entry point (`python -m genlab`), in a fresh interpreter, run in `cwd`."""
    full = {k: v for k, v in os.environ.items() if k != "GENLAB_DEBUG"} | {"OMP_NUM_THREADS": "1"} | (env or {})
    return subprocess.run([sys.executable, "-m", "genlab", *args], capture_output=True, text=True,
                          cwd=cwd, env=full, timeout=300)


def test_help_and_errors_through_the_entry_point(tmp_path):
    top = genlab("--help", cwd=tmp_path)
    assert top.returncode == 0
    listed = {line.split()[1] for line in top.stdout.splitlines() if line.startswith("│ ") and len(line.split()) > 2}
    assert {c[0] for c in COMMANDS} <= listed
    usage = genlab("train", "text", "--no-such-option", cwd=tmp_path)
    assert usage.returncode == 2 and "Usage: genlab train" in usage.stderr and "Traceback" not in usage.stderr
    mistake = genlab("sample", "no/such/run", cwd=tmp_path)
    assert mistake.returncode == 1 and mistake.stderr == "error: no/such/run: no such run directory\n"


def test_every_command_has_its_own_help(cli):
    for command in COMMANDS:
        r = cli(*command, "--help")
        assert r.returncode == 0 and f"Usage: genlab {' '.join(command)} " in r.stdout, command


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_usage_error_prints_usage_and_one_line_and_exits_2(command, cli):
    # In process: the entry point's own usage error is checked once, in test_help_and_errors_through_the_entry_point.
    r = cli(*command, "--no-such-option")
    assert r.returncode == 2, r.stderr
    assert f"Usage: genlab {' '.join(command)}" in r.stderr and "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error")]
    assert errors == [errors[0]] and "--no-such-option" in errors[0]


def test_bad_choice_and_bad_number_are_usage_errors(cli):
    for args in (["train", "text", "--max-steps", "many"], ["sample", "run", "--n", "two"]):
        r = cli(*args)
        assert r.returncode == 2 and "Usage:" in r.stderr and "Traceback" not in r.stderr, args


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny text run shared by the tests below."""
    import genlab as api
    from conftest import make_corpus

    root = tmp_path_factory.mktemp("cli")
    (root / "corpus.txt").write_text(make_corpus())
    api.train(tiny_config(root / "corpus.txt", root / "run", max_steps=20), progress=False)
    api.train({"task": "image", "out": str(root / "image-run"), "data": {"source": "digits"},
               "model": {"name": "vae", "channels": 8, "latent_dim": 4},
               "train": {"max_steps": 1, "batch_size": 8, "progress": False}}, progress=False)
    return root


def _bad_inputs(root):
    """(arguments, text the one-line error must contain) for mistakes users make."""
    (root / "afile.txt").write_text("x")
    (root / "no-newline.txt").write_text("a" * 50)
    (root / "table.csv").write_text("text,label\ngood day,a\nbad night,b\n")
    return [
        (["train", "text", "--data", "no/such/notes"], "no/such/notes: no such file or folder"),
        (["train", "text", "--set", "train.lr_max=3"], "train.lr_max: unknown key"),
        (["train", "text", "--model", "transformer"], "unknown family 'transformer'"),
        (["train", "text", "--data", str(root / "corpus.txt"), "--out", str(root / "afile.txt")], "is a file"),
        (["train", "text", "--set", "model.n_embd=130"], "model: n_embd (130) must be a multiple of n_head (4)"),
        (["train", "text", "--set", "model.dropout=1"], "model.dropout: must be in [0, 1)"),
        (["train", "text", "--batch-size", "0"], "train.batch_size"),
        (["train", "text", "--lr", "-0.1"], "train.lr"),
        (["train", "text", "--max-time", "inf"], "train.max_time: Input should be a finite number"),
        (["sample", str(root / "run"), "--max-time", "inf"], "--max-time: must be a positive number of seconds"),
        (["demo", "--seconds", "nan"], "--seconds: must be a positive number of seconds"),
        (["sweep", "text", "--space", "train.lr=1..inf"], "a range is two finite numbers"),
        (["sample", "no/such/run"], "no/such/run: no such run directory"),
        (["eval", "no/such/run"], "no/such/run: no such run directory"),
        (["sample", str(root / "run"), "--top-p", "1.5"], "sample.top_p"),
        (["sample", str(root / "run"), "--top-k", "-1"], "sample.top_k"),
        (["sample", str(root / "run"), "--temperature", "-1"], "sample.temperature"),
        (["sample", str(root / "run"), "--n", "0"], "--n"),
        (["sample", str(root / "run"), "--max-new-tokens", "-5"], "sample.max_new_tokens"),
        (["sample", str(root / "run"), "--out", str(root)], "is a folder"),
        (["sample", str(root / "run"), "--steps", "50"], "--steps does not apply"),
        (["sample", str(root / "run"), "--prime", "x.mid"], "--prime does not apply"),
        (["sample", "hf:" + str(root / "no-model")], "no-model"),
        (["sample", str(root / "image-run"), "--prompt", "Once"], "--prompt: this image run is not conditioned on text"),
        (["sample", str(root / "run"), "--class", "3"], "--class does not apply to text runs"),
        (["eval", str(root / "image-run"), "--data", str(root / "corpus.txt")], "not an image dataset"),
        (["eval-code", "--canonical", "--problems", "p.jsonl", "--memory-mb", "-1"], "--memory-mb"),
        (["eval-code", "--canonical", "--problems", "p.jsonl", "--workers", "-1"], "--workers"),
        (["eval-code", "--canonical", "--problems", "p.jsonl", "--timeout", "0"], "--timeout"),
        (["eval-code", "--canonical", "--problems", "p.jsonl", "--n", "0"], "--n"),
        (["eval-code", "--canonical", "--problems", "p.jsonl", "--k", "0"], "--k"),
        (["demo", "--only", "poetry"], "--only: unknown part 'poetry'"),
        (["data", "prepare", "no/such.csv", "--out", str(root / "prep")], "no/such.csv"),
        # A device or a pipe named as a file: /dev/zero was read until memory ran out, a pipe waited forever.
        (["sweep", "text", "--space-file", "/dev/zero", "--out", str(root / "study")], "--space-file /dev/zero: not a regular file"),
        (["data", "prepare", str(root / "table.csv"), "--out", str(root / "prep"), "--text-col", "text", "--augment", "synonym",
          "--synonyms", "/dev/zero"], "/dev/zero: not a regular file"),
        (["data", "prepare", "/dev/zero", "--input-format", "csv", "--out", str(root / "prep")], "/dev/zero: not a regular file"),
        (["train", "image", "--data", "/dev/zero", "--out", str(root / "new-run")], "/dev/zero: not a regular file or folder"),
        (["eval", str(root / "run"), "--data", "/dev/zero"], "/dev/zero: not a regular file or folder"),
        (["compare", str(root / "run"), "/dev/zero", "--out", str(root / "cmp")], "/dev/zero: neither a run directory"),
        # Written atomically, it was renamed over the device: as root, /dev/null became a regular file.
        (["sample", str(root / "run"), "--out", "/dev/null"], "--out /dev/null: exists and is not a regular file"),
    ]


def test_every_bad_input_is_one_line_exit_1_and_writes_nothing(trained, cli, tmp_path):
    before = sorted(p.relative_to(trained) for p in trained.rglob("*"))
    for args, message in _bad_inputs(trained):
        r = cli(*args, cwd=tmp_path)
        assert r.returncode == 1, (args, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
        assert r.stderr.startswith("error: ") and message in r.stderr, (args, r.stderr)
    after = sorted(p.relative_to(trained) for p in trained.rglob("*") if p.name not in ("afile.txt", "no-newline.txt", "table.csv"))
    assert after == before
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_broken_run_folders_are_one_line_errors(trained, tmp_path, cli):
    import shutil

    from genlab.core.runs import RunDir

    cases = {}
    wrong = tmp_path / "wrong-shape"
    shutil.copytree(trained / "run", wrong)
    config = (wrong / "config.toml").read_text().replace("n_embd = 32", "n_embd = 16")
    (wrong / "config.toml").write_text(config)
    cases[wrong] = (["sample", str(wrong)], "config.toml: makes model.wte.weight of shape")
    huge = tmp_path / "huge-config"  # shapes asking for terabytes: refused from the weights' header, not allocated
    shutil.copytree(trained / "run", huge)
    (huge / "config.toml").write_text((huge / "config.toml").read_text().replace("n_embd = 32", "n_embd = 1000000"))
    cases[huge] = (["sample", str(huge)], "but model.safetensors holds")
    truncated = tmp_path / "truncated"
    shutil.copytree(trained / "run", truncated)
    (truncated / "model.safetensors").write_bytes((truncated / "model.safetensors").read_bytes()[:100])
    cases[truncated] = (["sample", str(truncated)], "not a readable safetensors file")
    bad_state = tmp_path / "bad-state"
    shutil.copytree(trained / "run", bad_state)
    (RunDir(bad_state).latest_checkpoint() / "state.json").write_text("{not json")
    cases[bad_state] = (["train", "text", "--config", str(bad_state / "config.toml"), "--out", str(bad_state),
                         "--max-steps", "40"], "state.json: unreadable or incomplete")
    for folder, (args, message) in cases.items():
        files = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        r = cli(*args)
        assert r.returncode == 1 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == files  # nothing written or deleted


def test_debug_flag_and_environment_show_the_traceback_default_does_not(cli):
    assert "Traceback" not in cli("sample", "no/such/run").stderr
    r = cli("--debug", "sample", "no/such/run")
    assert r.returncode == 1 and "Traceback" in r.stderr
    r = cli("sample", "no/such/run", env={"GENLAB_DEBUG": "1"})
    assert r.returncode == 1 and "Traceback" in r.stderr


def test_train_without_model_uses_the_modality_default(tmp_path, cli):
    from genlab.core.config import DEFAULT_MODEL, build_config

    for task, family in DEFAULT_MODEL.items():
        assert build_config(None, {}, [], base={"task": task}).model.name == family
    (tmp_path / "notes.txt").write_text("a line of notes\n" * 300)
    r = cli("train", "text", "--data", "notes.txt", "--max-steps", "2", "--set", "model.n_layer=1",
            "--set", "model.n_embd=32", "--out", "runs/notes", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert 'name = "gpt"' in (tmp_path / "runs" / "notes" / "config.toml").read_text()
    r = cli("train", "image", "--data", "digits", "--max-steps", "1", "--set", "model.channels=8",
            "--out", "runs/img", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert 'name = "ddpm"' in (tmp_path / "runs" / "img" / "config.toml").read_text()
    assert "resuming" not in r.stdout + r.stderr  # a fresh run never says it resumes


def test_progress_on_a_pipe_is_one_plain_line_per_eval(tmp_path, corpus_file, cli):
    cfg = tiny_config(corpus_file, tmp_path / "run", max_steps=30, eval_interval=10, progress=True)
    import tomli_w

    (tmp_path / "run.toml").write_bytes(tomli_w.dumps(cfg).encode())
    r = cli("train", "text", "--config", str(tmp_path / "run.toml"))  # captured output: not a terminal
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr
    evals = [line for line in r.stderr.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in evals] == ["10", "20", "30"]


def test_train_sample_eval_from_the_command_line(tmp_path, corpus_file, cli):
    cfg = tiny_config(corpus_file, tmp_path / "run")
    import tomli_w

    (tmp_path / "run.toml").write_bytes(tomli_w.dumps(cfg).encode())
    r = cli("train", "text", "--config", str(tmp_path / "run.toml"), "--max-steps", "20", "--quiet", "--seed", "5")
    assert r.returncode == 0, r.stderr
    assert "run saved in" in r.stdout
    s1 = cli("sample", str(tmp_path / "run"), "--prompt", "The", "--max-new-tokens", "30", "--seed", "1", "--temperature", "0.8", "--top-k", "5", "--top-p", "0.9")
    s2 = cli("sample", str(tmp_path / "run"), "--prompt", "The", "--max-new-tokens", "30", "--seed", "1", "--temperature", "0.8", "--top-k", "5", "--top-p", "0.9")
    assert s1.returncode == 0 and s1.stdout == s2.stdout and s1.stdout.startswith("The")
    out = tmp_path / "samples.txt"
    r = cli("sample", str(tmp_path / "run"), "--n", "3", "--max-new-tokens", "20", "--out", str(out), "--seed", "2")
    assert r.returncode == 0 and out.read_text().count("--- sample") == 3
    png = tmp_path / "picture.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    r = cli("sample", str(tmp_path / "run"), "--max-new-tokens", "5", "--out", str(png))
    assert r.returncode == 1 and "is not a text file" in r.stderr and png.read_bytes().startswith(b"\x89PNG")
    r = cli("eval", str(tmp_path / "run"))
    assert r.returncode == 0 and "bits_per_char" in r.stdout
    results = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert results["bits_per_char"] > 0 and results["perplexity"] > 1
    saved = (tmp_path / "run" / "config.toml").read_text()
    assert "max_steps = 20" in saved and "seed = 5" in saved  # flags land in the resolved config


def test_a_word_level_run_from_the_command_line(tmp_path, corpus_file, cli):
    r = cli("train", "text", "--data", corpus_file, "--tokenizer", "word", "--model", "lstm", "--max-steps", "20", "--quiet",
            "--out", tmp_path / "words", "--set", "model.n_layer=1", "--set", "model.n_embd=32", "--set", "train.batch_size=8")
    assert r.returncode == 0, r.stderr
    from genlab.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(tmp_path / "words" / "tokenizer.json")
    assert tokenizer.kind == "word" and " the" in tokenizer.words  # words, with the space before them
    s = cli("sample", tmp_path / "words", "--prompt", "The cat", "--max-new-tokens", "12", "--seed", "1")
    assert s.returncode == 0 and s.stdout.startswith("The cat")
    # The CLI printed the prompt and twelve new tokens: words, punctuation or spaces of the vocabulary.
    from genlab.api import load

    sample = load(tmp_path / "words", device="cpu").generate("The cat", seed=1, max_new_tokens=12)[0]
    assert s.stdout.rstrip("\n") == "The cat" + sample.text and len(sample.tokens) == 12
    r = cli("eval", tmp_path / "words")
    results = json.loads((tmp_path / "words" / "eval.json").read_text())
    assert r.returncode == 0 and results["bits_per_char"] < results["loss"] / 0.6931  # a word carries several characters


def test_stop_strings_are_unescaped_like_printf(trained, cli):
    from genlab.cli.sample import unescape

    assert unescape(r"\n\n") == "\n\n" and unescape(r"a\tb\\n") == "a\tb\\n" and unescape("plain") == "plain"
    r = cli("sample", str(trained / "run"), "--prompt", "The", "--max-new-tokens", "200", "--temperature", "0",
            "--stop", r"\n", "--no-stream")
    assert r.returncode == 0, r.stderr
    assert "\n" not in r.stdout.rstrip("\n"), r.stdout  # generation stopped at the first newline


def test_a_corpus_on_one_line_trains_and_samples(tmp_path):
    import genlab as api

    (tmp_path / "one-line.txt").write_text("words without a newline " * 400)
    run = api.train(tiny_config(tmp_path / "one-line.txt", tmp_path / "run", max_steps=3), progress=False)
    (sample,) = run.generator().generate(max_new_tokens=5, seed=0)
    assert len(sample.tokens) == 5 and sample.finish_reason == "length" and isinstance(sample.text, str)


def test_threads_are_chosen_printed_and_recorded(tmp_path, corpus_file, cli):
    import torch

    r = cli("train", "text", "--data", corpus_file, "--out", tmp_path / "run", "--max-steps", "2", "--threads", "1",
            "--set", "model.n_layer=1", "--set", "model.n_embd=16", "--set", "model.n_head=2", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "threads=1" in r.stdout
    first = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["threads"] == 1 == torch.get_num_threads()
    for bad, message in (("0", "give at least 1"), ("lots", "neither a number of threads nor 'auto'")):
        r = cli("sample", tmp_path / "run", "--threads", bad)
        assert r.returncode == 1 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    import genlab.core.threads as threads

    cores = len(os.sched_getaffinity(0))
    assert 0 <= threads.idle_cores(sorted(os.sched_getaffinity(0))) <= cores + 1e-9
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    with pytest.MonkeyPatch.context() as m:
        m.setattr(os, "environ", env)
        for idle, expected in ((cores, cores), (0.2, 1), (None, cores), (cores - 0.9, max(1, cores - 1))):
            m.setattr(threads, "idle_cores", lambda _cores, idle=idle: idle)
            assert threads.resolve("auto") == expected  # the idle cores this process may use, at least one
        env["OMP_NUM_THREADS"] = "3"
        assert threads.resolve("auto") == 3


@pytest.mark.parametrize("delay", [0.05, 0.4, 1.2])
def test_ctrl_c_at_any_moment_of_start_up_is_one_line_and_exit_130(tmp_path, delay):
    """Ctrl-C while Python, torch and the verbs load, or while the run starts: no traceback, status 130."""
    import signal
    import time
    from pathlib import Path

    (tmp_path / "c.txt").write_text("the cat sat on the mat\n" * 200)
    genlab_bin = str(Path(sys.executable).with_name("genlab"))
    proc = subprocess.Popen([genlab_bin, "train", "text", "--data", str(tmp_path / "c.txt"), "--out", str(tmp_path / "r"),
                             "--max-steps", "100000", "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # as a terminal would: a test runner's worker may ignore SIGINT, and children inherit that
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    # 130, or killed by the signal itself when it came before Python set up its handler (nothing printed then)
    assert proc.returncode in (130, -signal.SIGINT), err
    assert "Traceback" not in err and "Traceback" not in out


def test_a_progress_bar_in_a_log_writes_plain_lines_every_few_seconds(monkeypatch):
    """Output to a file: no carriage returns, and a line per interval, so a long phase never looks dead."""
    import io
    import time

    from genlab.core.progress import progress_bar

    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    for _ in progress_bar(range(6), desc="building", unit="file", log_every=0.05):
        time.sleep(0.06)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) >= 3 and all(line.startswith("building") for line in lines)
    assert "6/6" in lines[-1]


def test_eval_says_when_it_replaces_an_earlier_eval_json(cli, corpus_file, tmp_path):
    import genlab

    run = genlab.train(tiny_config(corpus_file, tmp_path / "run", max_steps=2), progress=False).path
    first = cli("eval", run, "--n", "2")
    assert first.returncode == 0 and "replacing" not in first.stdout
    again = cli("eval", run, "--n", "2")
    assert again.returncode == 0 and "replacing the earlier one" in again.stdout


def test_sample_max_time_bounds_generation_and_says_so(trained, cli, tmp_path):
    r = cli("sample", str(trained / "run"), "--max-new-tokens", "100000", "--max-time", "0.5", "--n", "2",
            "--out", str(tmp_path / "s.txt"))
    assert r.returncode == 0, r.stderr
    assert "2 of 2 samples stopped at --max-time 0.5 s" in r.stderr
    assert 0 < len((tmp_path / "s.txt").read_text()) < 100_000
    r = cli("sample", str(trained / "run"), "--max-time", "0")
    assert r.returncode == 1 and r.stderr.strip() == "error: --max-time: must be a positive number of seconds, not 0.0"
    r = cli("sample", str(trained / "image-run"), "--max-time", "5")
    assert r.returncode == 1 and r.stderr.strip() == "error: --max-time does not apply to image runs"


def test_files_nested_thousands_deep_are_one_line_naming_them(trained, cli, tmp_path):
    """Python's JSON and TOML parsers recurse, so arrays nested 100,000 deep raised RecursionError: an internal
    error. Each such file is now one line naming it."""
    import shutil

    nested = "[" * 100_000 + "]" * 100_000
    (tmp_path / "deep.toml").write_text(f'task = "text"\nx = {nested}\n')
    (tmp_path / "problems.jsonl").write_text(nested + "\n")
    run = tmp_path / "run"
    shutil.copytree(trained / "run", run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write(nested + "\n" + '{"step": 99, "loss": 1.0}\n')
    cases = [(["train", "text", "--config", tmp_path / "deep.toml", "--out", tmp_path / "o"], "deep.toml: not valid TOML"),
             (["eval-code", "--canonical", "--problems", tmp_path / "problems.jsonl"], "problems.jsonl:1: JSON nested too deeply"),
             (["report", run], "metrics.jsonl: line ")]
    for args, message in cases:
        r = cli(*args)
        assert r.returncode == 1 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
