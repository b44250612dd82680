"""Q-learning on Gymnasium's CartPole-v1, with a table and with a network, to show where tables stop.

    q-learning: the 4 observations cut into bins -> a table Q[state, action] -> epsilon-greedy episodes,
                Q[s, a] += alpha * (r + gamma * max_a' Q[s', a'] - Q[s, a])              (Watkins 1989)
    dqn:        observation -> MLP -> Q(s, .) ; a replay buffer of past steps, and a target network that
                trails the online one (soft updates, theta' <- tau theta + (1 - tau) theta') and gives the
                bootstrap target r + gamma * max_a' Q_target(s', a') (Mnih et al. 2015; Lillicrap et al. 2016
                for the soft update), Huber loss

The state discretization (why these bins): the cart's position and velocity
change slowly and rarely end an episode before the 500-step limit, so they
get 3 bins each; what decides balance is the pole's angle (6 bins within the
+-12 degrees at which the episode ends) and its angular velocity (12 bins
within +-2 rad/s). Values beyond a range go to its end bins. 3*3*6*12 = 648
states. A table cannot tell apart states inside one bin, which is where it
stops: it learns to balance for a while, but the cart drifts out of the
track, because a bin of cart positions spans 1.6 m.

Episodes are seeded (seed + episode number) and so is every random choice, so
a run repeats exactly. The Q-table is saved as .npz, the network as
safetensors: no pickle.
"""

from __future__ import annotations

import json
import math
import os
import signal
from typing import Annotated, Literal
from pathlib import Path

import numpy as np
from pydantic import Field

from genlab.core.config import Count, Positive, PositiveFloat, Section
from genlab.core.errors import GenlabError, Interrupted
from genlab.core.files import atomic_write_bytes, atomic_write_text
from genlab.core.folders import claim
from genlab.core.progress import progress_bar
from genlab.core.runs import RunDir, save_tensors
from genlab.media.plots import new_figure, save_figure
from genlab.training.runlog import RunLog
from genlab.training.signals import stop_signals

SOLVED = 475.0  # Gymnasium's reward threshold for CartPole-v1 (mean over 100 episodes)
# (low, high, bins) for cart position, cart velocity, pole angle, pole angular velocity
BINS = [(-2.4, 2.4, 3), (-3.0, 3.0, 3), (-math.radians(12), math.radians(12), 6), (-2.0, 2.0, 12)]


Fraction = Annotated[float, Field(ge=0, le=1)]


class CartPoleConfig(Section):
    algo: Literal["q-learning", "dqn"] = "q-learning"
    episodes: Positive = 1000
    seed: Count = 0
    gamma: Fraction = 0.99
    epsilon_start: Fraction = 1.0
    epsilon_end: Fraction = 0.02
    epsilon_decay_episodes: Positive = 300  # q-learning: linear decay over these episodes (dqn: over epsilon_decay_steps)
    log: tuple[str, ...] = ()  # experiment trackers that get each episode's return and the greedy figures
    alpha: Fraction = 0.1  # q-learning: step size
    lr: PositiveFloat = 5e-4  # dqn
    hidden: Positive = 128  # dqn: two hidden layers of this width
    batch_size: Positive = 128  # dqn
    buffer_size: Positive = 50_000  # dqn
    tau: Fraction = 0.005  # dqn: how far the target network moves towards the online one at each step
    epsilon_decay_steps: Positive = 5_000  # dqn
    eval_every: Positive = 25  # dqn: episodes between greedy checks; the best weights are kept
    solved_patience: Count = 0  # stop once the greedy check scores 500 this many times in a row (0: never)


def make_env(render: bool = False):
    try:
        import gymnasium as gym
    except ModuleNotFoundError:
        raise GenlabError("genlab rl cartpole needs gymnasium: pip install 'gymnasium[classic-control]'") from None
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # rendering to arrays needs no display
    return gym.make("CartPole-v1", render_mode="rgb_array" if render else None)


def discretize(obs: np.ndarray) -> int:
    """An observation -> one of the 648 table rows (BINS above)."""
    index = 0
    for value, (lo, hi, n) in zip(obs, BINS):
        b = int(np.clip((value - lo) / (hi - lo) * n, 0, n - 1))
        index = index * n + b
    return index


def n_states() -> int:
    return math.prod(n for _, _, n in BINS)


class TablePolicy:
    def __init__(self, table: np.ndarray):
        self.table = table  # (states, 2)

    def act(self, obs) -> int:
        return int(np.argmax(self.table[discretize(obs)]))


class NetworkPolicy:
    def __init__(self, net):
        self.net = net

    def act(self, obs) -> int:
        import torch

        with torch.no_grad():
            return int(self.net(torch.as_tensor(obs, dtype=torch.float32)[None]).argmax())


def q_network(hidden: int):
    import torch.nn as nn

    return nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2))


def run_episode(env, policy, seed: int, frames: list | None = None) -> float:
    obs, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        if frames is not None:
            frames.append(env.render())
        obs, reward, terminated, truncated, _ = env.step(policy.act(obs))
        total += reward
        done = terminated or truncated
    return total


def evaluate_policy(policy, episodes: int = 100, seed: int = 10_000) -> list[float]:
    """Greedy returns over `episodes` fresh episodes (seeds apart from training's)."""
    env = make_env()
    returns = [run_episode(env, policy, seed + i) for i in range(episodes)]
    env.close()
    return returns


def epsilon_at(cfg: CartPoleConfig, progress: int, span: int) -> float:
    return max(cfg.epsilon_end, cfg.epsilon_start - (cfg.epsilon_start - cfg.epsilon_end) * progress / span)


def episodes(cfg: CartPoleConfig, progress: bool, stop=None):
    """The training episodes' numbers, with a progress bar (a line every 10 s in a log); they end early when
    `stop` (training.signals.stop_signals) has seen a signal."""
    for episode in progress_bar(range(cfg.episodes), desc=cfg.algo, unit="episode", enabled=progress):
        if stop is not None and stop.signum is not None:
            break
        yield episode


def train_table(cfg: CartPoleConfig, progress: bool = True, stop=None) -> tuple[TablePolicy, list[float]]:
    rng = np.random.default_rng(cfg.seed)
    table = np.zeros((n_states(), 2))
    env = make_env()
    returns = []
    for episode in episodes(cfg, progress, stop):
        obs, _ = env.reset(seed=cfg.seed + episode)
        s, total, done = discretize(obs), 0.0, False
        eps = epsilon_at(cfg, episode, cfg.epsilon_decay_episodes)
        while not done:
            a = int(rng.integers(2)) if rng.random() < eps else int(np.argmax(table[s]))
            obs, reward, terminated, truncated, _ = env.step(a)
            s2 = discretize(obs)
            target = reward + (0.0 if terminated else cfg.gamma * table[s2].max())  # a time limit is not an end
            table[s, a] += cfg.alpha * (target - table[s, a])
            s, total, done = s2, total + reward, terminated or truncated
        returns.append(total)
    env.close()
    return TablePolicy(table), returns


def train_dqn(cfg: CartPoleConfig, progress: bool = True, stop=None):
    # Long on purpose: the DQN loop (act, store, learn, sync the target, check) in one place.
    import torch
    import torch.nn.functional as F

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net, target = q_network(cfg.hidden), q_network(cfg.hidden)
    target.load_state_dict(net.state_dict())
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    # The replay buffer: preallocated arrays, written round-robin.
    states = np.zeros((cfg.buffer_size, 4), dtype=np.float32)
    actions = np.zeros(cfg.buffer_size, dtype=np.int64)
    rewards = np.zeros(cfg.buffer_size, dtype=np.float32)
    nexts = np.zeros((cfg.buffer_size, 4), dtype=np.float32)
    ends = np.zeros(cfg.buffer_size, dtype=np.float32)
    filled, steps = 0, 0
    env = make_env()
    returns, checks = [], []
    best = (-1.0, {k: v.clone() for k, v in net.state_dict().items()})
    solved_in_a_row = 0
    for episode in episodes(cfg, progress, stop):
        obs, _ = env.reset(seed=cfg.seed + episode)
        total, done = 0.0, False
        while not done:
            eps = epsilon_at(cfg, steps, cfg.epsilon_decay_steps)
            if rng.random() < eps:
                a = int(rng.integers(2))
            else:
                with torch.no_grad():
                    a = int(net(torch.as_tensor(obs)[None]).argmax())
            obs2, reward, terminated, truncated, _ = env.step(a)
            i = steps % cfg.buffer_size
            states[i], actions[i], rewards[i], nexts[i], ends[i] = obs, a, reward, obs2, float(terminated)
            filled, steps = min(filled + 1, cfg.buffer_size), steps + 1
            obs, total, done = obs2, total + reward, terminated or truncated
            if filled >= cfg.batch_size:
                rows = rng.integers(0, filled, cfg.batch_size)
                s, s2 = torch.from_numpy(states[rows]), torch.from_numpy(nexts[rows])
                with torch.no_grad():
                    bootstrap = torch.from_numpy(rewards[rows]) + cfg.gamma * (1 - torch.from_numpy(ends[rows])) * target(s2).max(1).values
                q = net(s).gather(1, torch.from_numpy(actions[rows])[:, None])[:, 0]
                loss = F.smooth_l1_loss(q, bootstrap)
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
                optimizer.step()
                with torch.no_grad():
                    for p_target, p in zip(target.parameters(), net.parameters()):
                        p_target.lerp_(p, cfg.tau)
        returns.append(total)
        if (episode + 1) % cfg.eval_every == 0:  # a short greedy check; the best weights are what is kept
            score = float(np.mean(evaluate_policy(NetworkPolicy(net), 10, seed=50_000 + episode)))
            checks.append((episode + 1, score))
            if score >= best[0]:
                best = (score, {k: v.clone() for k, v in net.state_dict().items()})
            solved_in_a_row = solved_in_a_row + 1 if score >= 500 else 0
            if cfg.solved_patience and solved_in_a_row >= cfg.solved_patience:
                break
    env.close()
    net.load_state_dict(best[1])
    return NetworkPolicy(net), returns, checks


def save_gif(frames: list[np.ndarray], dest: Path, every: int = 2, width: int = 300) -> None:
    """An episode's frames as an animated GIF (every `every`-th frame, `width` pixels wide)."""
    import io

    from PIL import Image

    images = [Image.fromarray(f).resize((width, round(f.shape[0] * width / f.shape[1]))) for f in frames[::every]]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=40 * every, loop=0)
    atomic_write_bytes(dest, buffer.getvalue())


def plot_returns(returns: list[float], checks: list[tuple[int, float]], dest: Path, title: str) -> None:
    fig, ax = new_figure(8, 4)
    ax.plot(range(1, len(returns) + 1), returns, alpha=0.35, label="episode return")
    window = min(50, len(returns))
    if window > 1:
        smooth = np.convolve(returns, np.ones(window) / window, mode="valid")
        ax.plot(range(window, len(returns) + 1), smooth, label=f"mean of the last {window}")
    if checks:
        ax.plot(*zip(*checks), "o", label="greedy check (10 episodes)")
    ax.axhline(SOLVED, color="gray", linestyle="--", label="solved (475)")
    ax.set_xlabel("episode")
    ax.set_ylabel("return (steps balanced)")
    ax.set_title(title)
    ax.legend()
    save_figure(fig, dest)


def cartpole(cfg: CartPoleConfig, out: Path, progress: bool = True, eval_episodes: int = 100) -> dict:
    """Episodes against an environment, not the Trainer's batches: a Q-table has no gradient, and a DQN's step
    interleaves acting, a replay buffer and a target network, so both loops are their own; they record through
    the same run log (metrics.jsonl, trackers) and stop on the same signals.

    Train, save (q_table.npz or dqn.safetensors), plot the returns, evaluate greedily over `eval_episodes`
    episodes and record one greedy episode as a GIF. Returns the summary also written to out/summary.json.
    Ctrl-C or SIGTERM ends training at the episode's end: what was learned is saved and summarized all the
    same (over 10 greedy episodes), then Interrupted says so."""
    # Long on purpose: train, save, plot, evaluate and record, in the order a user reads the results.
    if cfg.algo not in ("q-learning", "dqn"):
        raise GenlabError(f"--algo: {cfg.algo!r} is not q-learning or dqn")
    out = Path(out)
    claim(out, "rl-cartpole")
    checks: list = []
    with stop_signals() as stop:
        if cfg.algo == "q-learning":
            policy, returns = train_table(cfg, progress, stop)
        else:
            policy, returns, checks = train_dqn(cfg, progress, stop)
    if stop.signum is not None:
        eval_episodes = min(eval_episodes, 10)
    if cfg.algo == "q-learning":
        tmp = out / ".q_table.tmp.npz"
        np.savez(tmp, q=policy.table, bins=np.array(BINS))
        os.replace(tmp, out / "q_table.npz")
    else:
        save_tensors(out / "dqn.safetensors", dict(policy.net.state_dict()))
    plot_returns(returns, checks, out / "rewards.png", f"CartPole-v1, {cfg.algo}")
    greedy = evaluate_policy(policy, eval_episodes)
    frames: list = []
    env = make_env(render=True)
    shown = run_episode(env, policy, seed=20_000, frames=frames)
    env.close()
    save_gif(frames, out / "episode.gif")
    first_solved = next((i + 1 for i in range(99, len(returns)) if np.mean(returns[i - 99: i + 1]) >= SOLVED), None)
    summary = {"algo": cfg.algo, "episodes_trained": len(returns), "greedy_mean_return": float(np.mean(greedy)),
               "greedy_min_return": float(np.min(greedy)), "greedy_episodes": eval_episodes,
               "solved": bool(np.mean(greedy) >= SOLVED), "training_episodes_to_solved_window": first_solved,
               "last_100_training_mean": float(np.mean(returns[-100:])), "gif_episode_return": shown,
               "config": cfg.model_dump(mode="json")}
    if stop.signum is not None:
        summary["stopped_by"] = signal.Signals(stop.signum).name
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    # metrics.jsonl (and the trackers): the return of every training episode, then the greedy figures.
    log = RunLog(RunDir(out), True, list(cfg.log), {"cartpole": cfg.model_dump(mode="json")}, resumed_at=None)
    for episode, value in enumerate(returns, start=1):
        log.write({"step": episode, "return": float(value)})
    log.write({"step": len(returns), "greedy_mean_return": summary["greedy_mean_return"],
               "greedy_min_return": summary["greedy_min_return"]})
    log.finish()
    if stop.signum is not None:
        raise Interrupted(f"{summary['stopped_by']} after {len(returns)} episodes: what it learned is saved in {out} "
                          f"(greedy mean return {summary['greedy_mean_return']:.1f} over {eval_episodes} episodes)", stop.signum)
    return summary
