"""Checkpoints survive a crash at any instant, and Ctrl-C / SIGTERM stop at a step boundary with a
checkpoint of that exact step; resuming either way ends with the weights of a run never stopped."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import genlab
from genlab.core import runs
from genlab.core.runs import RunDir, load_tensors
from conftest import tiny_config

CRASH_POINTS = ["checkpoint-written", "checkpoint-renamed", "checkpoint-pointed", "checkpoint-cleaned"]


class Crash(BaseException):
    """Stands for the process dying: nothing after the crash point runs."""


def _same_weights(a, b):
    ta, tb = load_tensors(RunDir(a).weights), load_tensors(RunDir(b).weights)
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    from conftest import make_corpus

    torch.set_num_threads(1)  # as the tests themselves run (conftest), so sums are added in the same order
    root = tmp_path_factory.mktemp("whole")
    (root / "corpus.txt").write_text(make_corpus())
    cfg = tiny_config(root / "corpus.txt", root / "run", max_steps=20, checkpoint_interval=5, eval_interval=10)
    cfg["model"]["dropout"] = 0.1  # the RNG state must be restored too
    genlab.train(cfg, progress=False)
    return root, cfg


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_crash_at_every_point_of_the_checkpoint_swap_resumes_exactly(uninterrupted, tmp_path, monkeypatch, point):
    root, cfg = uninterrupted
    cfg = dict(cfg, out=str(tmp_path / "run"))
    calls = []

    def crash(name):
        calls.append(name)
        if name == point and calls.count(name) == 2:  # during the second checkpoint (step 10)
            raise Crash(name)

    with monkeypatch.context() as m, pytest.raises(Crash):
        m.setattr(runs, "crash_point", crash)
        genlab.train(cfg, progress=False)
    latest = RunDir(tmp_path / "run").latest_checkpoint()
    assert latest is not None, f"no checkpoint left after a crash at {point}"
    genlab.train(cfg, progress=False)
    assert _same_weights(tmp_path / "run", root / "run")
    left = sorted(p.name for p in (tmp_path / "run" / "checkpoint").iterdir())
    assert len(left) == 2 and "latest" in left  # stale and temporary folders are gone


def _train_in_subprocess(cfg: dict) -> subprocess.Popen:
    import json

    code = ("import genlab, json, sys\nfrom genlab.cli import main\n"
            f"sys.argv = ['genlab', 'train', 'text', '--config', {json.dumps(cfg['_toml'])}]\nmain()")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


def _signal_config(cfg: dict, out) -> dict:
    # Long enough to still run when the signal comes (after 3 logged steps), short enough to finish after.
    train = dict(cfg["train"], max_steps=150, log_interval=1, checkpoint_interval=1000, eval_interval=1000)
    return dict(cfg, out=str(out), train=train)


@pytest.fixture(scope="module")
def uninterrupted_150(uninterrupted):
    """The signal tests' run, never stopped (one for both signals)."""
    root, cfg = uninterrupted
    cfg = _signal_config(cfg, root / "straight")
    genlab.train(cfg, progress=False)
    return root / "straight"


@pytest.mark.xdist_group("signals")  # one uninterrupted run for both signals
@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_checkpoints_that_step_exits_128_plus_n_and_resumes_exactly(uninterrupted, uninterrupted_150, tmp_path,
                                                                            signum, status):
    import tomli_w

    cfg = _signal_config(uninterrupted[1], tmp_path / "run")
    toml = tmp_path / "run.toml"
    toml.write_bytes(tomli_w.dumps(cfg).encode())
    proc = _train_in_subprocess({"_toml": str(toml)})
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (metrics.is_file() and metrics.read_text().count("\n") >= 3):
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    assert "checkpoint saved in" in err and "run the same command again to resume" in err and "Traceback" not in err
    import json

    stopped_at = json.loads((RunDir(tmp_path / "run").latest_checkpoint() / "state.json").read_text())["step"]
    assert 3 <= stopped_at < 150
    genlab.train(cfg, progress=False)  # the same command again: resumes and finishes
    assert _same_weights(tmp_path / "run", uninterrupted_150)


def test_a_time_budget_becomes_a_step_plan_kept_on_resume(tmp_path, corpus_file):
    import json

    from genlab.training.schedule import PLAN_AFTER_STEPS

    cfg = tiny_config(corpus_file, tmp_path / "run", max_steps=PLAN_AFTER_STEPS + 6, max_time=3600.0, log_interval=1,
                      checkpoint_interval=PLAN_AFTER_STEPS + 2)
    first = dict(cfg, train=dict(cfg["train"], max_steps=PLAN_AFTER_STEPS + 2))
    genlab.train(first, progress=False)
    state = json.loads((RunDir(tmp_path / "run").latest_checkpoint() / "state.json").read_text())
    assert state["planned_steps"] == PLAN_AFTER_STEPS + 2  # an hour fits every step: the plan is max_steps
    genlab.train(cfg, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {r["planned_steps"] for r in rows if "planned_steps" in r} == {PLAN_AFTER_STEPS + 2}


def _family_config(family, tmp_path, corpus_file, midi_folder):
    train = {"max_steps": 6, "checkpoint_interval": 3, "eval_interval": 1000, "batch_size": 8, "eval_batches": 1,
             "sample_tokens": 4, "progress": False}
    sizes = {"gpt": {"n_layer": 1, "n_head": 2, "n_embd": 16, "dropout": 0.1}, "lstm": {"n_layer": 1, "n_embd": 16},
             "gru": {"n_layer": 1, "n_embd": 16}, "fnet": {"n_layer": 1, "n_embd": 16, "dropout": 0.1},
             "gan": {"hidden": [32], "latent_dim": 8}, "dcgan": {"channels": 8, "latent_dim": 8},
             "vae": {"channels": 8, "latent_dim": 4}, "ddpm": {"channels": 8, "heads": 1, "timesteps": 50}}
    if family == "music":
        return {"task": "music", "data": {"source": str(midi_folder), "music": {"transpose": 6}},
                "model": {"name": "gpt", **sizes["gpt"], "block_size": 32}, "train": train}
    if family == "lstm-carry":  # the carried hidden state and the streams' positions are in the checkpoint
        return {"task": "text", "data": {"source": str(corpus_file)}, "model": {"name": "lstm", **sizes["lstm"], "block_size": 16},
                "train": {**train, "carry_state": True}}
    if family == "fnet-fourier":
        return {"task": "text", "data": {"source": str(corpus_file)},
                "model": {"name": "fnet", **sizes["fnet"], "block_size": 16, "mixing": "fourier"}, "train": train}
    if family in ("gan", "dcgan", "vae", "ddpm"):
        return {"task": "image", "data": {"source": "digits"}, "model": {"name": family, **sizes[family]},
                "train": {**train, "ema_decay": 0.9} if family == "ddpm" else train}
    return {"task": "text", "data": {"source": str(corpus_file)}, "model": {"name": family, **sizes[family], "block_size": 16},
            "train": train}


@pytest.fixture(scope="module")
def midi_folder(tmp_path_factory):
    import pretty_midi

    folder = tmp_path_factory.mktemp("midi")
    for k in range(3):
        pm = pretty_midi.PrettyMIDI(initial_tempo=120)
        piano = pretty_midi.Instrument(program=0)
        piano.notes = [pretty_midi.Note(velocity=80, pitch=55 + (i * (k + 2)) % 24, start=i * 0.25, end=i * 0.25 + 0.25)
                       for i in range(64)]
        pm.instruments.append(piano)
        pm.write(str(folder / f"piece{k}.mid"))
    return folder


@pytest.mark.parametrize("family", ["gpt", "lstm", "lstm-carry", "gru", "fnet", "fnet-fourier", "gan", "dcgan", "vae", "ddpm", "music"])
def test_every_family_resumes_exactly(family, tmp_path, corpus_file, midi_folder, monkeypatch):
    # Two optimizers (GANs), EMA (ddpm), dropout (gpt, fnet) and augmentation (music transposition)
    # all live in the checkpoint: a run stopped after its step-3 checkpoint ends like one never stopped.
    cfg = _family_config(family, tmp_path, corpus_file, midi_folder)
    genlab.train({**cfg, "out": str(tmp_path / "straight")}, progress=False)

    def crash(name):
        if name == "checkpoint-pointed":
            raise Crash(name)

    with monkeypatch.context() as m, pytest.raises(Crash):
        m.setattr(runs, "crash_point", crash)
        genlab.train({**cfg, "out": str(tmp_path / "stopped")}, progress=False)
    genlab.train({**cfg, "out": str(tmp_path / "stopped")}, progress=False)
    assert _same_weights(tmp_path / "stopped", tmp_path / "straight")


def test_a_metrics_log_cut_short_by_a_kill_is_read_without_its_last_line(uninterrupted, tmp_path, cli):
    """A run killed while it wrote metrics.jsonl leaves half a line: reading the log (resume cuts it back to the
    checkpoint, report and compare plot it) leaves that line out. A bad line anywhere else is one line of error
    naming the file, not an internal error."""
    import shutil

    root, _ = uninterrupted
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    rows = RunDir(run).read_metrics()
    assert rows and all("step" in r for r in rows)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 21, "train_lo')
    assert RunDir(run).read_metrics() == rows
    r = cli("report", run)
    assert r.returncode == 0, r.stderr
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n[1, 2]\n{"step": 2, "loss": 1.0}\n')
    r = cli("report", run)
    assert r.returncode == 1 and r.stderr.strip() == f"error: {run / 'metrics.jsonl'}: line 2 is not a JSON object"
    (run / "metrics.jsonl").write_bytes(b'{"step": 1, "loss": 2.0}\n{"step": 2, "note": "\xff"}\n')
    r = cli("report", run)
    assert r.returncode == 1 and "metrics.jsonl: unreadable" in r.stderr and len(r.stderr.strip().splitlines()) == 1
