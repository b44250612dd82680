"""Reinforcement learning: CartPole with a Q-table and a DQN, from the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.numpy import load_file

from conftest import make_corpus
from genlab.rl.cartpole import BINS, CartPoleConfig, discretize, n_states, train_table
from genlab.rl.rewards import load_reward


def test_the_discretization_covers_every_state_once_and_clips_the_ends():
    assert n_states() == 3 * 3 * 6 * 12
    rng = np.random.default_rng(0)
    lows, highs = np.array([b[0] for b in BINS]), np.array([b[1] for b in BINS])
    seen = {discretize(lows + (highs - lows) * rng.random(4)) for _ in range(20_000)}
    assert seen == set(range(n_states()))  # every row reachable, nothing outside the table
    assert discretize(np.array([-100.0, -100.0, -1.0, -100.0])) == 0
    assert discretize(np.array([100.0, 100.0, 1.0, 100.0])) == n_states() - 1
    tilted_left, tilted_right = (discretize(np.array([0.0, 0.0, a, 0.0])) for a in (-math.radians(10), math.radians(10)))
    assert tilted_left != tilted_right  # the pole's angle decides the row


def test_q_learning_learns_to_balance():
    _, returns = train_table(CartPoleConfig(episodes=300, epsilon_decay_episodes=150), progress=False)
    assert np.mean(returns[-50:]) > 3 * np.mean(returns[:50])  # random play lasts ~20 steps


def test_cartpole_from_the_cli_saves_a_table_a_curve_a_gif_and_repeats_itself(cli, tmp_path):
    r = cli("rl", "cartpole", "--episodes", "40", "--out", tmp_path / "a", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "greedy episodes" in r.stderr
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["episodes_trained"] == 40 and summary["greedy_episodes"] == 100
    assert 8 <= summary["greedy_mean_return"] <= 500
    with np.load(tmp_path / "a" / "q_table.npz", allow_pickle=False) as f:  # no pickle needed to read it
        table = f["q"]
    assert table.shape == (n_states(), 2) and np.abs(table).sum() > 0
    gif = Image.open(tmp_path / "a" / "episode.gif")
    assert gif.n_frames > 2 and (tmp_path / "a" / "rewards.png").is_file()
    cli("rl", "cartpole", "--episodes", "40", "--out", tmp_path / "b", "--quiet")
    with np.load(tmp_path / "b" / "q_table.npz", allow_pickle=False) as f:
        assert np.array_equal(f["q"], table)  # the same seed, the same table


def test_dqn_saves_its_network_in_safetensors(cli, tmp_path):
    r = cli("rl", "cartpole", "--algo", "dqn", "--episodes", "25", "--out", tmp_path / "d", "--quiet")
    assert r.returncode == 0, r.stderr
    weights = load_file(tmp_path / "d" / "dqn.safetensors")
    assert weights["0.weight"].shape == (128, 4) and weights["4.weight"].shape == (2, 128)
    assert json.loads((tmp_path / "d" / "summary.json").read_text())["algo"] == "dqn"
    r = cli("rl", "cartpole", "--algo", "sarsa", "--out", tmp_path / "e")
    assert r.returncode != 0 and "--algo" in r.stderr


@pytest.mark.parametrize("args, flag", [(["cartpole", "--episodes", "-3"], "--episodes"),
                                        (["RUN", "--reward", "length", "--lr", "nan"], "--lr"),
                                        (["RUN", "--reward", "length", "--steps", "0"], "--steps"),
                                        (["RUN", "--reward", "length", "--kl", "inf"], "--kl")])
def test_out_of_range_rl_options_are_one_line_errors_that_write_nothing(cli, tiny_run, tmp_path, args, flag):
    args = [tiny_run if a == "RUN" else a for a in args]
    r = cli("rl", *args, "--out", tmp_path / "out", "--quiet")
    assert r.returncode == 1 and r.stderr.startswith(f"error: {flag}:") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "out").exists()


# ---- REINFORCE on a sequence run ---------------------------------------------------------------------



def test_shipped_rewards_score_what_they_say():
    assert load_reward("code-parses")(["x + 1\n", "x +\n"], ["def f(x):\n    return ", "def f(x):\n    return "]) == [1.0, 0.0]
    assert load_reward("contains")(["a cat sat", "a dog"], ["", ""], words="cat,sat") == [1.0, 0.0]
    assert load_reward("avoids")(["a cat sat", "a dog"], ["", ""], words="cat,sat") == [0.0, 1.0]
    scores = load_reward("length")(["abcde", "a", "a" * 30], ["", "", ""], min="3", max="10")
    assert scores[0] == 1.0 and 0 < scores[1] < 1 and 0 <= scores[2] < scores[1] + 1
    with pytest.raises(Exception, match="not a shipped reward"):
        load_reward("nonsense")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    import genlab

    folder = tmp_path_factory.mktemp("rlstart")
    (folder / "corpus.txt").write_text(make_corpus(8000))
    return genlab.train({"task": "text", "out": str(folder / "run"), "data": {"source": str(folder / "corpus.txt")},
                         "model": {"name": "gpt", "n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 32, "dropout": 0.0},
                         "train": {"max_steps": 15, "batch_size": 8, "eval_interval": 15, "eval_batches": 1,
                                   "sample_tokens": 5, "progress": False}}, progress=False).path


def test_reinforce_makes_rewarded_text_likelier_and_logs_reward_and_kl(cli, tiny_run, tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(
        "def starts_with_x(texts, prompts, **options):\n    return [1.0 if t.startswith(options['letter']) else 0.0 for t in texts]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import genlab

    def p_letter(run, letter="t"):
        gen = genlab.load(run, device="cpu")
        with torch.no_grad():
            probs = gen.model(torch.tensor([gen.encode_prompt("The ")]))[0, -1].softmax(-1)
        return float(probs[gen.tokenizer.encode(letter)[0]])

    out = tmp_path / "tuned"
    r = cli("rl", tiny_run, "--reward", "my_rewards:starts_with_x", "--reward-arg", "letter=t", "--prompt", "The ",
            "--out", out, "--steps", "12", "--batch", "8", "--max-new-tokens", "3", "--lr", "0.01", "--kl", "0.01", "--quiet")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"reward", "kl", "step"} <= rows[-1].keys() and rows[-1]["kl"] != 0 and (out / "rl.png").is_file()
    assert p_letter(out) > 1.5 * p_letter(tiny_run)  # the rewarded first letter became likelier
    assert cli("sample", out, "--prompt", "The ", "--max-new-tokens", "5").returncode == 0  # a normal run
    r = cli("rl", tiny_run, "--reward", "contains", "--reward-arg", "words=cat", "--out", out, "--steps", "1", "--max-new-tokens", "3")
    assert r.returncode != 0 and "already a run" in r.stderr


def test_ctrl_c_during_cartpole_training_saves_what_it_learned_and_exits_130(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    out = tmp_path / "cp"
    proc = subprocess.Popen([str(Path(sys.executable).with_name("genlab")), "rl", "cartpole", "--algo", "dqn", "--episodes",
                             "100000", "--out", str(out), "--quiet", "--threads", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for _ in range(600):  # training has begun once the run folder is claimed
        if (out / ".genlab").exists():
            break
        time.sleep(0.1)
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "what it learned is saved" in err
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_by"] == "SIGINT" and 0 < summary["episodes_trained"] < 100000
    assert (out / "dqn.safetensors").stat().st_size > 0 and (out / "episode.gif").exists()
