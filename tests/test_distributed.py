"""Data parallelism: two CPU processes under torchrun compute what one process does with the same global batch."""

import json
import os
import subprocess
import sys

import torch

import genlab
from genlab.core.runs import RunDir, load_tensors
from conftest import tiny_config


def test_two_processes_match_one_with_the_same_global_batch(tmp_path, corpus_file):
    cfg = tiny_config(corpus_file, tmp_path / "ddp", max_steps=12, batch_size=8, eval_interval=100, checkpoint_interval=100)
    import tomli_w

    (tmp_path / "run.toml").write_bytes(tomli_w.dumps(cfg).encode())
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
         "-m", "genlab", "train", "text", "--config", str(tmp_path / "run.toml"), "--quiet"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert r.returncode == 0, r.stderr[:3000] + "\n...\n" + r.stderr[-1500:]

    genlab.train(dict(cfg, out=str(tmp_path / "single")), progress=False)
    two = load_tensors(tmp_path / "ddp" / "model.safetensors")
    one = load_tensors(tmp_path / "single" / "model.safetensors")
    assert two.keys() == one.keys()
    for k in one:
        # Same arithmetic up to the order of float additions in the all-reduce.
        torch.testing.assert_close(two[k], one[k], atol=2e-5, rtol=1e-4, msg=k)


def test_a_two_player_gan_trains_under_torchrun_and_rank_0_writes_the_run(tmp_path):
    # Both players through torch's DDP engine; the discriminator is frozen while the generator's loss flows
    # through it. Random draws differ with the slice size, so this checks the run, not equality with one process.
    cfg = {"task": "image", "out": str(tmp_path / "gan"), "data": {"source": "digits"},
           "model": {"name": "gan", "hidden": [32], "latent_dim": 8},
           "train": {"max_steps": 4, "batch_size": 16, "grad_accum": 2, "eval_interval": 100, "checkpoint_interval": 2,
                     "progress": False}}
    import tomli_w

    (tmp_path / "run.toml").write_bytes(tomli_w.dumps(cfg).encode())
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
         "-m", "genlab", "train", "image", "--config", str(tmp_path / "run.toml"), "--quiet"],
        capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300,
    )
    assert r.returncode == 0, r.stderr[:3000] + "\n...\n" + r.stderr[-1500:]
    rows = [json.loads(line) for line in (tmp_path / "gan" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "d_loss" in r] == [1]  # one writer: each row once
    assert len(genlab.load(tmp_path / "gan", device="cpu").generate(4, seed=0)) == 4


def torchrun(config: dict, path, task: str = "text") -> None:
    import tomli_w

    path.write_bytes(tomli_w.dumps(config).encode())
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
         "-m", "genlab", "train", task, "--config", str(path), "--quiet"],
        capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300,
    )
    assert r.returncode == 0, r.stderr[:3000] + "\n...\n" + r.stderr[-1500:]


def test_fsdp_shards_resume_and_match_one_process(tmp_path, corpus_file):
    # Each rank holds half of every parameter and optimizer slot; rank 0 evaluates, samples and saves the
    # gathered whole. A constant learning rate lets the run stop at step 6 and resume to 12 under FSDP.
    train = dict(batch_size=8, eval_interval=3, checkpoint_interval=6, warmup_steps=0, min_lr_ratio=1.0,
                 ema_decay=0.9, keep="last")
    cfg = tiny_config(corpus_file, tmp_path / "fsdp", max_steps=6, shard="fsdp", **train)
    torchrun(cfg, tmp_path / "run.toml")
    torchrun(dict(cfg, train=dict(cfg["train"], max_steps=12)), tmp_path / "run.toml")

    genlab.train(tiny_config(corpus_file, tmp_path / "single", max_steps=12, **train), progress=False)
    rows = [json.loads(line) for line in (tmp_path / "fsdp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "val_loss" in r and "final_val_loss" not in r] == [3, 6, 9, 12]
    assert (tmp_path / "fsdp" / "samples").is_dir()
    latest = {run: RunDir(tmp_path / run).latest_checkpoint() for run in ("fsdp", "single")}
    for name in ("model.safetensors", "state.safetensors"):  # the EMA weights; the optimizer's moments
        two, one = (load_tensors((latest[run] if name == "state.safetensors" else tmp_path / run) / name)
                    for run in ("fsdp", "single"))
        assert two.keys() == one.keys()
        for k in one:
            torch.testing.assert_close(two[k], one[k], atol=2e-5, rtol=1e-4, msg=f"{name}: {k}")
