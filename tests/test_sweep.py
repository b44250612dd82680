"""`genlab sweep`: Optuna over config fields, each trial an ordinary run; stopped and run again, it goes on."""

import json
from pathlib import Path

import pytest

from genlab.core.runs import RunDir

TINY = ["--set", "model.n_layer=1", "--set", "model.n_head=2", "--set", "model.block_size=32", "--set", "train.eval_interval=4",
        "--set", "train.eval_batches=2", "--set", "train.batch_size=8", "--max-steps", "8", "--quiet"]


def test_a_sweep_trains_ordinary_runs_scores_them_and_goes_on_where_it_stopped(cli, corpus_file, tmp_path):
    import optuna

    out = tmp_path / "sweep"
    space = ["--space", "model.n_embd=16,32", "--space", "train.lr=1e-3..1e-2:log"]
    r = cli("sweep", "text", "--data", corpus_file, "--model", "gpt", *space, "--trials", "3", "--pruner", "none",
            "--out", out, *TINY)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "sweep.json").read_text())
    assert [t["state"] for t in summary["trials"]] == ["complete"] * 3 and (out / "sweep.png").is_file()
    for t in summary["trials"]:
        run = RunDir(t["run"]).require()
        config = run.config.read_text()
        assert f"n_embd = {t['model.n_embd']}" in config and t["model.n_embd"] in (16, 32)
        assert 1e-3 <= t["train.lr"] <= 1e-2 and f"lr = {t['train.lr']}" in config
        final = [row for row in run.read_metrics() if "final_val_loss" in row][-1]
        assert t["value"] == pytest.approx(final["final_val_loss"])  # scored by the kept weights on the whole val split
    best = min(summary["trials"], key=lambda t: t["value"])
    assert summary["best"]["trial"] == best["trial"] and f"best: trial {best['trial']}" in r.stdout

    # A trial stopped mid-way (its process killed) is tried again with its parameters; finished ones stay.
    study = optuna.load_study(study_name="genlab", storage=f"sqlite:///{out / 'study.db'}")
    stopped = study.ask({"model.n_embd": optuna.distributions.CategoricalDistribution([16, 32]),
                         "train.lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)})
    params = dict(stopped.params)
    kept = {t["run"]: (Path(t["run"]) / "model.safetensors").stat().st_mtime_ns for t in summary["trials"]}
    r = cli("sweep", "text", "--data", corpus_file, "--model", "gpt", *space, "--trials", "4", "--pruner", "none",
            "--out", out, *TINY)
    assert r.returncode == 0, r.stderr
    trials = json.loads((out / "sweep.json").read_text())["trials"]
    assert [t["state"] for t in trials] == ["complete"] * 3 + ["fail", "complete"]
    assert {k: trials[-1][k] for k in params} == params
    for run, mtime in kept.items():
        assert (Path(run) / "model.safetensors").stat().st_mtime_ns == mtime


@pytest.mark.parametrize("item, message", [
    ("model.n_embd", "expected FIELD=a,b,c or FIELD=low..high[:log]"),
    ("train.lr=3..1", "a range is two finite numbers, low..high, low below high"),
    ("train.lr=1..1e400", "a range is two finite numbers"),
    ("train.lr=0..1:log", "a log range must start above 0"),
    ("model.n_embd=16", "give two or more choices, or a range"),
    ("model.n_embdd=16,32", "did you mean model.n_embd"),
    ("train.lr=-1..1", "train.lr"),
])
def test_a_bad_space_is_one_line_and_writes_nothing(item, message, cli, corpus_file, tmp_path):
    r = cli("sweep", "text", "--data", corpus_file, "--space", item, "--out", tmp_path / "s", *TINY)
    assert r.returncode == 1 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "s").exists()


def test_a_grid_sweep_tries_every_combination_once_and_writes_the_best_as_a_recipe(cli, corpus_file, tmp_path):
    """How the budget recipes are made again on a user's own data: a grid over choices, the best trial's config
    written as a recipe that trains like any config."""
    out, recipe = tmp_path / "grid", tmp_path / "best.toml"
    r = cli("sweep", "text", "--data", corpus_file, "--model", "gpt", "--space", "model.n_embd=16,32",
            "--space", "train.weight_decay=0.0,0.1", "--sampler", "grid", "--trials", "10", "--pruner", "none",
            "--out", out, "--recipe", recipe, *TINY)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "sweep.json").read_text())
    tried = sorted((t["model.n_embd"], t["train.weight_decay"]) for t in summary["trials"])
    assert tried == [(16, 0.0), (16, 0.1), (32, 0.0), (32, 0.1)]  # the whole grid, once each, then the study ends
    text = recipe.read_text()
    best = summary["best"]
    assert text.startswith("# The best of 4 trials") and "\nout = " not in text
    assert f"n_embd = {best['params']['model.n_embd']}" in text
    r = cli("train", "text", "--config", recipe, "--out", tmp_path / "again", "--quiet")
    assert r.returncode == 0, r.stderr
    r = cli("sweep", "text", "--data", corpus_file, "--space", "train.lr=1e-3..1e-2", "--sampler", "grid",
            "--out", tmp_path / "ranged", *TINY)
    assert r.returncode == 1 and "--sampler grid: train.lr is a range" in r.stderr and not (tmp_path / "ranged").exists()


def test_data_every_trial_would_fail_on_stops_the_sweep_in_one_line(cli, tmp_path):
    r = cli("sweep", "text", "--data", tmp_path / "missing.txt", "--space", "model.n_embd=16,32", "--trials", "3",
            "--out", tmp_path / "s", *TINY)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("error: trial 0:") and "missing.txt: no such file or folder" in r.stderr
