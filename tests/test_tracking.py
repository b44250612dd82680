"""`--log tensorboard,mlflow`: every scalar of metrics.jsonl, each eval's samples and the config, read back with
the trackers' own readers; a resumed run continues the same TensorBoard steps and the same MLflow run."""

import json

import pytest

from conftest import tiny_config


def rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def tensorboard_scalars(folder) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}, events


def test_a_run_logged_to_both_trackers_reads_back_as_metrics_jsonl(tmp_path, cli, corpus_file, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "runs" / "tracked"
    args = ["train", "text", "--data", corpus_file, "--out", out, "--log", "tensorboard,mlflow", "--max-steps", "30",
            "--set", "train.eval_interval=10", "--set", "train.log_interval=5", "--set", "model.n_layer=1",
            "--set", "model.n_head=2", "--set", "model.n_embd=32", "--set", "model.block_size=32", "--quiet"]
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    expected: dict[str, dict[int, float]] = {}
    for row in rows(out):
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                expected.setdefault(key, {})[row["step"]] = float(value)
    assert {"loss", "lr", "val_loss", "val_bits_per_char", "final_val_loss"} <= set(expected)

    scalars, events = tensorboard_scalars(out / "tensorboard")
    for key, by_step in expected.items():
        assert scalars[key] == pytest.approx(by_step, rel=1e-6), key
    assert any(tag.startswith("samples/step") for tag in events.Tags()["tensors"])  # the text sample of each eval

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    run_id = (out / "mlflow_run_id.txt").read_text().strip()
    logged = client.get_run(run_id)
    assert logged.info.run_name == "tracked" and logged.info.status == "FINISHED"
    assert logged.data.params["model.n_embd"] == "32" and logged.data.params["train.max_steps"] == "30"
    for key, by_step in expected.items():
        history = {m.step: m.value for m in client.get_metric_history(run_id, key)}
        assert history == pytest.approx(by_step, rel=1e-6), key
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"model.safetensors", "config.toml", "loss.png", "samples"} <= artifacts
    assert {a.path for a in client.list_artifacts(run_id, "samples")} >= {"samples/step_000010.txt", "samples/step_000030.txt"}

    # Resumed with a larger budget: the same MLflow run, TensorBoard's steps going on from the checkpoint.
    r = cli(*[a if a != "30" else "50" for a in args])
    assert r.returncode == 0, r.stderr
    assert (out / "mlflow_run_id.txt").read_text().strip() == run_id
    assert len(client.search_runs([logged.info.experiment_id])) == 1
    steps = {m.step for m in client.get_metric_history(run_id, "val_loss")}
    assert {10, 20, 30, 40, 50} <= steps
    scalars, _ = tensorboard_scalars(out / "tensorboard")
    assert sorted(scalars["val_loss"]) == [10, 20, 30, 40, 50]
    final = {r["step"]: r["val_loss"] for r in rows(out) if "val_loss" in r}
    assert scalars["val_loss"] == pytest.approx(final, rel=1e-6)


def test_an_unknown_tracker_is_one_line(cli, corpus_file, tmp_path):
    r = cli("train", "text", "--data", corpus_file, "--out", tmp_path / "x", "--log", "tensorboard,wandb")
    assert r.returncode == 1 and r.stderr.strip() == "error: --log: 'wandb' is not a tracker genlab logs to (tensorboard, mlflow)"
    assert not (tmp_path / "x").exists()


def test_compare_logs_every_run_it_trains(tmp_path, cli, corpus_file):
    r = cli("compare", "--models", "gpt,lstm", "--data", corpus_file, "--out", tmp_path / "cmp", "--log", "tensorboard",
            "--set", "train.max_steps=4", "--set", "train.eval_batches=1", "--set", "model.n_embd=32",
            "--set", "model.block_size=32", "--quiet")
    assert r.returncode == 0, r.stderr
    for family in ("gpt", "lstm"):
        scalars, _ = tensorboard_scalars(tmp_path / "cmp" / family / "tensorboard")
        assert scalars["final_val_loss"] == pytest.approx({r["step"]: r["final_val_loss"] for r in rows(tmp_path / "cmp" / family)
                                                           if "final_val_loss" in r})


def test_rl_logs_its_rows(tmp_path, cli, corpus_file):
    import genlab

    start = genlab.train(tiny_config(corpus_file, tmp_path / "start", max_steps=4), progress=False)
    r = cli("rl", start.path, "--reward", "length", "--reward-arg", "min=5", "--out", tmp_path / "tuned", "--steps", "4",
            "--batch", "2", "--max-new-tokens", "8", "--log", "tensorboard", "--quiet")
    assert r.returncode == 0, r.stderr
    scalars, _ = tensorboard_scalars(tmp_path / "tuned" / "tensorboard")
    logged = [row for row in rows(tmp_path / "tuned") if "reward" in row]
    assert len(logged) >= 2
    assert scalars["reward"] == pytest.approx({row["step"]: row["reward"] for row in logged})
    assert scalars["kl"] == pytest.approx({row["step"]: row["kl"] for row in logged})


def test_cartpole_logs_each_episode(tmp_path, cli):
    r = cli("rl", "cartpole", "--episodes", "12", "--out", tmp_path / "cp", "--log", "tensorboard", "--quiet")
    assert r.returncode == 0, r.stderr
    returns = {row["step"]: row["return"] for row in rows(tmp_path / "cp") if "return" in row}
    assert sorted(returns) == list(range(1, 13))
    scalars, _ = tensorboard_scalars(tmp_path / "cp" / "tensorboard")
    assert scalars["return"] == pytest.approx(returns) and 12 in scalars["greedy_mean_return"]


def test_a_tracking_store_mlflow_cannot_open_is_one_line(tmp_path, cli, corpus_file, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "bogus://nowhere")
    r = cli("train", "text", "--data", corpus_file, "--out", tmp_path / "run", "--log", "mlflow", "--max-steps", "2", "--quiet")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("error: train.log: mlflow cannot log there (") and not (tmp_path / "run").exists()
