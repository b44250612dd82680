"""`genlab rl`: reinforcement learning — CartPole with a Q-table or a DQN, or a sequence run fine-tuned for a reward."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from genlab.cli.root import app, threads_option, use_threads


@app.command(no_args_is_help=True)
def rl(
    target: str = typer.Argument(..., help="`cartpole`, or a sequence run directory to fine-tune for --reward."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder to write (cartpole: runs/cartpole-ALGO; a run: required)."),
    algo: str = typer.Option("q-learning", "--algo", help="cartpole: q-learning (a table) or dqn (a network)."),
    episodes: Optional[int] = typer.Option(None, "--episodes", help="cartpole: training episodes (q-learning 1000, dqn 400)."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same run."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    threads: str = threads_option(),
) -> None:
    """Reinforcement learning. `genlab rl cartpole [--algo dqn]`: Q-learning on Gymnasium's CartPole-v1, with the
    table or network, a reward curve, 100 greedy episodes and a GIF of one."""
    use_threads(threads)
    import sys

    from genlab.errors import GenlabError

    if target != "cartpole":
        raise GenlabError(f"{target}: genlab rl takes `cartpole`")
    from genlab.rl.cartpole import CartPoleConfig, cartpole

    cfg = CartPoleConfig(algo=algo, seed=seed, episodes=episodes or (1000 if algo == "q-learning" else 400))
    out = out or Path("runs") / f"cartpole-{algo}"
    summary = cartpole(cfg, out, progress=not quiet)
    verdict = "solved" if summary["solved"] else "not solved (475 needed)"
    print(f"{algo}: mean return {summary['greedy_mean_return']:.1f} over {summary['greedy_episodes']} greedy episodes "
          f"after {summary['episodes_trained']} training episodes: {verdict}", file=sys.stderr)
    print(f"wrote {out}/summary.json, rewards.png, episode.gif and "
          f"{'q_table.npz' if algo == 'q-learning' else 'dqn.safetensors'}", file=sys.stderr)
