import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import genlab
from genlab.core.config import TrainConfig
from genlab.core.runs import RunDir, load_tensors
from genlab.training.schedule import learning_rate, plan_steps
from conftest import tiny_config


def test_schedule_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    lrs = [learning_rate(cfg, s) for s in range(111)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # monotone decay after warmup
    assert lrs[110] == pytest.approx(0.1)
    assert learning_rate(cfg, 20, total_steps=20) == pytest.approx(0.1)  # a time budget planned as 20 steps
    assert learning_rate(cfg, 15, total_steps=20) < learning_rate(cfg, 15)  # ...decays sooner than max_steps


def test_a_slow_first_step_does_not_shrink_a_time_budget_plan():
    # --compile spends ~30 s in the first step, then 0.1 s a step: 100 s hold ~700 steps, not 100 / (31 / 11).
    cfg = TrainConfig(max_time=100.0, max_steps=100_000)
    assert plan_steps(cfg, 11, 31.0, since_step=1, since_elapsed=30.0) == 11 + 690
    assert plan_steps(cfg, 10, 1.0) == 10 + 990  # steps timed from the start: 0.1 s each, 99 s left
    assert plan_steps(TrainConfig(max_time=100.0, max_steps=500), 11, 31.0, 1, 30.0) == 500  # max_steps caps it


def _train_in_subprocess(config: dict) -> subprocess.Popen:
    code = f"import genlab, json; genlab.train(json.loads({json.dumps(json.dumps(config))}))"
    env = dict(os.environ, OMP_NUM_THREADS="1")  # like the test process itself (see conftest)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def test_run_killed_with_sigkill_and_resumed_ends_with_identical_weights(tmp_path, corpus_file):
    # Dropout on, so the RNG state must be restored too, not just weights and optimizer.
    common = dict(max_steps=120, checkpoint_interval=10, eval_interval=40)
    killed = tiny_config(corpus_file, tmp_path / "killed", **common)
    killed["model"]["dropout"] = 0.1
    proc = _train_in_subprocess(killed)
    run = RunDir(tmp_path / "killed")
    deadline = time.time() + 120
    step = 0
    while time.time() < deadline and proc.poll() is None:
        latest = run.latest_checkpoint()
        if latest is not None:
            try:
                step = json.loads((latest / "state.json").read_text())["step"]
            except (json.JSONDecodeError, FileNotFoundError):
                step = 0
            if step >= 30:
                break
        time.sleep(0.01)
    assert proc.poll() is None, f"training ended before it could be killed: {proc.stderr.read().decode()[-500:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 30 <= step < 120
    assert not (tmp_path / "killed" / "model.safetensors").exists()

    resumed = genlab.train(killed, progress=False)  # same out: resumes from the checkpoint
    assert resumed.results["step"] == 120

    whole = dict(killed, out=str(tmp_path / "whole"))
    genlab.train(whole, progress=False)
    a = load_tensors(tmp_path / "killed" / "model.safetensors")
    b = load_tensors(tmp_path / "whole" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [r["step"] for r in map(json.loads, (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert steps == sorted(set(steps)), "rows logged after the checkpoint were not replaced on resume"


def test_resume_refuses_a_changed_config(tmp_path, corpus_file):
    cfg = tiny_config(corpus_file, tmp_path / "run", max_steps=5)
    genlab.train(cfg, progress=False)
    cfg["model"]["n_embd"] = 64
    with pytest.raises(genlab.GenlabError, match="different config"):
        genlab.train(cfg, progress=False)
    assert genlab.train(cfg, progress=False, overwrite=True).results["step"] == 5


def test_gradient_accumulation_matches_a_big_batch(tmp_path, corpus_file):
    # 2 x 4 sequences accumulated == 8 sequences at once, when the batches are the same sequences.
    import numpy as np

    from genlab.datasets.token_store import WindowSampler
    from genlab.models.gpt import GPT, GPTConfig
    from genlab.objectives.lm import LanguageModeling
    from genlab.core.runs import RunDir
    from genlab.training.trainer import Trainer

    tokens = np.random.default_rng(0).integers(0, 20, 5000).astype(np.uint16)

    class Fixed:
        def __init__(self, per):
            self.inner, self.per, self.buf = WindowSampler(tokens, 16, 8, 0), per, []

        def __next__(self):
            if not self.buf:
                x, y = next(self.inner)
                self.buf = [(x[i : i + self.per], y[i : i + self.per]) for i in range(0, 8, self.per)]
            return self.buf.pop(0)

        def state_dict(self):
            return self.inner.state_dict()

    results = []
    for per, accum in ((8, 1), (4, 2)):
        torch.manual_seed(0)
        model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=16), 20)
        cfg = TrainConfig(max_steps=3, batch_size=per, grad_accum=accum, warmup_steps=1, eval_interval=100,
                          checkpoint_interval=100, progress=False, device="cpu")
        Trainer(LanguageModeling(model), Fixed(per), cfg, RunDir(tmp_path / f"r{per}")).fit()
        results.append(model.wte.weight.detach().clone())
    torch.testing.assert_close(results[0], results[1], atol=1e-5, rtol=1e-4)


def test_ema_weights_are_what_model_safetensors_holds(tmp_path, corpus_file):
    cfg = tiny_config(corpus_file, tmp_path / "ema", max_steps=10, ema_decay=0.5)
    genlab.train(cfg, progress=False)
    saved = load_tensors(tmp_path / "ema" / "model.safetensors")
    checkpoint = RunDir(tmp_path / "ema").latest_checkpoint()
    live = load_tensors(checkpoint / "model.safetensors")
    ema = load_tensors(checkpoint / "ema.safetensors")
    key = "model.wte.weight"
    assert torch.equal(saved[key], ema[key])
    assert not torch.equal(saved[key], live[key])


def _scripted_trainer(tmp_path, name, losses, **train):
    """A tiny GPT trainer whose evals report `losses` in turn (eval every 2 steps); records the weights each eval saw."""
    import numpy as np

    from genlab.datasets.token_store import WindowSampler
    from genlab.models.gpt import GPT, GPTConfig
    from genlab.objectives.lm import LanguageModeling
    from genlab.training.trainer import Trainer

    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=16), 20)
    tokens = np.random.default_rng(0).integers(0, 20, 5000).astype(np.uint16)
    script, seen = iter(losses), {}
    trainer = None

    def evaluate(full=False):
        if full:
            seen["final"] = {k: v.clone() for k, v in model.state_dict().items()}
            return {"val_loss": 9.0}
        seen[trainer.state.step] = {k: v.clone() for k, v in model.state_dict().items()}
        return {"val_loss": next(script)}

    cfg = TrainConfig(**{"max_steps": 2 * len(losses), "batch_size": 4, "warmup_steps": 1, "eval_interval": 2,
                         "checkpoint_interval": 100, "progress": False, "device": "cpu", **train})
    trainer = Trainer(LanguageModeling(model), WindowSampler(tokens, 16, 4, 0), cfg, RunDir(tmp_path / name), evaluate)
    return trainer, seen


def test_the_best_weights_are_kept_and_patience_stops_the_run(tmp_path):
    trainer, seen = _scripted_trainer(tmp_path, "best", [3.0, 2.0, 2.5, 2.6, 2.7, 1.0], patience=3)
    results = trainer.fit()
    # Evals at steps 2, 4, 6, 8, 10: the best (2.0) was at step 4; three evals without improvement stop the
    # run at step 10, which is not evaluated twice (the scripted 1.0 is never read).
    assert trainer.state.step == 10 and results["kept_step"] == 4
    kept = load_tensors(tmp_path / "best" / "model.safetensors")
    assert all(torch.equal(v, seen[4][k.removeprefix("model.")]) for k, v in kept.items())
    assert not torch.equal(seen[4]["wte.weight"], seen[10]["wte.weight"])  # training went on after the best
    assert all(torch.equal(v, seen[4][k]) for k, v in seen["final"].items())  # and the final score is of the kept
    rows = RunDir(tmp_path / "best").read_metrics()
    assert any(r.get("stopped_early") == "no better val loss in 3 evals" and r["best_step"] == 4 for r in rows)
    final = rows[-1]  # the kept weights on the whole val split, said as such
    assert final["kept_step"] == 4 and final["final_val_loss"] == 9.0 and final["val_batches"] == "all"
    assert results["val_loss"] == 9.0  # the run's figure is the whole-split one
    assert [r["val_batches"] for r in rows if "val_loss" in r] == [20] * 5  # periodic evals say they are a sample

    trainer, seen = _scripted_trainer(tmp_path, "last", [3.0, 2.0, 2.5, 2.6, 2.7, 1.0], keep="last")
    trainer.fit()
    kept = load_tensors(tmp_path / "last" / "model.safetensors")
    assert all(torch.equal(v, seen[12][k.removeprefix("model.")]) for k, v in kept.items())  # the last, at step 12


def test_compiled_training_matches_eager_and_may_be_turned_on_at_resume(tmp_path, corpus_file):
    # torch.compile changes how the step is computed, not what: the same weights within float rounding.
    # Compiling is not part of a run's identity, so a run may resume with it turned on.
    from torch._dynamo.utils import counters

    weights = {}
    for name in ("eager", "compiled"):
        first = tiny_config(corpus_file, tmp_path / name, max_steps=10, keep="last")
        genlab.train(first, progress=False)
        again = {**first, "train": {**first["train"], "max_steps": 20, "compile": name == "compiled"}}
        graphs = counters["stats"]["unique_graphs"]
        run = genlab.train(again, progress=False)
        assert run.results["step"] == 20 and run.config.train.compile == (name == "compiled")
        assert (counters["stats"]["unique_graphs"] > graphs) == (name == "compiled")  # it did compile
        weights[name] = load_tensors(run.path / "model.safetensors")
    assert weights["eager"].keys() == weights["compiled"].keys()
    for k, w in weights["eager"].items():
        torch.testing.assert_close(weights["compiled"][k], w, rtol=1e-4, atol=1e-4)


def test_compile_without_a_working_compiler_warns_once_and_trains_eagerly(tmp_path, corpus_file):
    # A machine without a C++ compiler (CXX points nowhere; a fresh inductor cache so nothing compiled
    # earlier is reused): the run still finishes, with one line saying why it is not compiled.
    env = dict(os.environ, OMP_NUM_THREADS="1", CXX=str(tmp_path / "no-such-g++"),
               TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"))
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "genlab", "train", "text", "--data", str(corpus_file), "--out", str(out),
                        "--max-steps", "5", "--set", "model.n_layer=1", "--set", "model.n_embd=16",
                        "--set", "model.n_head=2", "--set", "model.block_size=16", "--compile", "--quiet"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-800:]
    warnings = [line for line in r.stderr.splitlines() if "torch.compile does not work here" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: train.compile:") and "C++ compiler" in warnings[0]
    assert (out / "model.safetensors").is_file()


def test_compile_is_refused_where_a_task_does_not_use_it(tmp_path, cli):
    r = cli("train", "image", "--data", "digits", "--out", tmp_path / "img", "--compile", "--max-steps", "1")
    assert r.returncode != 0 and not (tmp_path / "img").exists()
    assert r.stderr.strip().splitlines()[-1] == (
        "error: train.compile: the image task trains without torch.compile (text, code and music use it)")


def test_a_resumed_run_with_a_larger_time_budget_trains_on_and_with_a_spent_one_says_so(tmp_path, capsys):
    import genlab
    from conftest import make_corpus, tiny_config

    (tmp_path / "c.txt").write_text(make_corpus(5000))
    cfg = tiny_config(tmp_path / "c.txt", tmp_path / "run", max_steps=100_000, max_time=1.0, eval_interval=10_000,
                      checkpoint_interval=10_000)
    first = genlab.train(cfg, progress=False).results
    capsys.readouterr()
    again = genlab.train(dict(cfg, train=dict(cfg["train"], max_time=0.5)), progress=False).results
    assert again["step"] == first["step"]
    assert "already spent its time budget" in capsys.readouterr().err
    more = genlab.train(dict(cfg, train=dict(cfg["train"], max_time=2.5)), progress=False).results
    assert more["step"] > first["step"] and more["elapsed"] >= 2.5
    plan = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    planned = [r["planned_steps"] for r in plan if "planned_steps" in r]
    assert max(planned) > first["step"]  # the schedule was planned again for the larger budget


def test_a_time_budget_bounds_the_run_evals_and_samples_included(tmp_path):
    """Evals every step, each slower than a step: the budget still bounds the wall clock, and the final eval on the
    whole split, which would not fit, is skipped with a note (it used to run after every budget)."""
    import genlab
    from conftest import make_corpus, tiny_config

    (tmp_path / "c.txt").write_text(make_corpus(60_000))
    cfg = tiny_config(tmp_path / "c.txt", tmp_path / "run", max_steps=1, eval_interval=1, eval_batches=40, sample_tokens=60)
    genlab.train(cfg, progress=False)  # the data prepared and a first checkpoint: what follows is training alone
    budget = 3.0
    started = time.perf_counter()
    results = genlab.train(dict(cfg, train=dict(cfg["train"], max_steps=100_000, max_time=budget)), progress=False).results
    took = time.perf_counter() - started
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "val_loss" in r and r["step"] > 1]
    assert len(evals) >= 2 and results["elapsed"] <= budget + 1.0
    assert took < budget + 4.0, took  # loading and saving around the budget; before, evals came on top of it
    assert any("final_skipped" in r for r in rows) and "final_skipped" in results


def test_a_time_budget_warms_up_for_a_small_share_of_its_planned_steps():
    """A budget planned as 60 steps warms up for 3 (5 %), not the configured 100, and decays to the floor at 60;
    a long plan keeps the configured warmup, and max_steps alone keeps it whatever its length."""
    from genlab.training.schedule import warmup_steps

    cfg = TrainConfig(lr=1.0, warmup_steps=100, max_steps=100_000, max_time=150.0, min_lr_ratio=0.1)
    assert warmup_steps(cfg, 60) == 3 and warmup_steps(cfg, 10_000) == 100 and warmup_steps(cfg) == 100
    lrs = [learning_rate(cfg, s, total_steps=60) for s in range(61)]
    assert lrs[:3] == pytest.approx([1 / 3, 2 / 3, 1.0]) and lrs[60] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))
    assert learning_rate(TrainConfig(lr=1.0, warmup_steps=100, max_steps=60), 59) == pytest.approx(0.6)


def test_samples_a_spent_budget_never_timed_are_skipped_and_said(tmp_path, corpus_file):
    """--max-time bounds the command: samples at the end of a budget that no periodic eval has timed (their cost
    unknown: a PixelCNN grid took 90 s after a 6 s budget) are skipped with a line; a timed one keeps them."""
    import genlab
    from conftest import tiny_config

    untimed = genlab.train(tiny_config(corpus_file, tmp_path / "untimed", max_steps=100_000, max_time=1.0,
                                       eval_interval=100_000), progress=False)
    rows = untimed.path.joinpath("metrics.jsonl").read_text()
    assert "samples_skipped" in rows and not list((untimed.path / "samples").glob("*"))
    timed = genlab.train(tiny_config(corpus_file, tmp_path / "timed", max_steps=100_000, max_time=1.0, eval_interval=5),
                         progress=False)
    assert list((timed.path / "samples").glob("step_*.txt")) and "samples_skipped" not in timed.path.joinpath("metrics.jsonl").read_text()
