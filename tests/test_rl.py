"""Reinforcement learning: CartPole with a Q-table and a DQN, from the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load_file

from genlab.rl.cartpole import BINS, CartPoleConfig, discretize, n_states, train_table


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
