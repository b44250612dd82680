"""`genlab rl`: reinforcement learning — CartPole with a Q-table or a DQN, or a sequence run fine-tuned for a reward."""

from __future__ import annotations

# Commands import the engines they run inside their bodies, on purpose: `genlab --help` and a bad flag answer
# at once, before torch (seconds) loads.

from pathlib import Path
from typing import Optional

import typer

from genlab.cli.root import app, threads_option, use_threads
from genlab.cli.train import trackers


@app.command(no_args_is_help=True)
def rl(
    target: str = typer.Argument(..., help="`cartpole`, or a sequence run directory to fine-tune for --reward."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder to write (cartpole: runs/cartpole-ALGO; a run: required)."),
    algo: str = typer.Option("q-learning", "--algo", help="cartpole: q-learning (a table) or dqn (a network)."),
    reward: Optional[str] = typer.Option(None, "--reward", help="A run: code-parses, code-passes, contains, avoids, length, or module:function (docs/rl.md)."),
    reward_arg: list[str] = typer.Option([], "--reward-arg", help="key=value for the reward: words=a,b  min=20  max=200  (repeatable)."),
    problems: Optional[Path] = typer.Option(None, "--problems", help="A run: HumanEval-format JSONL; its prompts are the prompts (and code-passes runs its tests)."),
    prompt: list[str] = typer.Option([], "--prompt", help="A run: a prompt to continue (repeatable; default: the run's sample prompt)."),
    kl: float = typer.Option(0.1, "--kl", help="A run: weight of the KL penalty to the start model."),
    steps: int = typer.Option(200, "--steps", help="A run: policy-gradient steps."),
    batch: int = typer.Option(8, "--batch", help="A run: continuations drawn per step."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="A run: tokens per continuation."),
    lr: float = typer.Option(1e-4, "--lr", help="A run: learning rate."),
    episodes: Optional[int] = typer.Option(None, "--episodes", help="cartpole: training episodes (q-learning 1000, dqn 400)."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same run."),
    log: Optional[str] = typer.Option(None, "--log", help="Also log to tensorboard, mlflow or both."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    threads: str = threads_option(),
) -> None:
    """Reinforcement learning. `genlab rl RUN --reward NAME --out NEW`: REINFORCE fine-tuning of a text or code run
    with a KL penalty to where it started. `genlab rl cartpole [--algo dqn]`: Q-learning on Gymnasium's CartPole-v1,
    with a table or a network, a reward curve, 100 greedy episodes and a GIF of one."""
    # Long because typer declares each option in the signature; the body only dispatches.
    use_threads(threads)
    import sys

    from genlab.core.errors import GenlabError

    if target != "cartpole":
        from genlab.rl.finetune import RLConfig, reinforce

        if reward is None or out is None:
            raise GenlabError("genlab rl RUN needs --reward and --out (or: genlab rl cartpole)")
        options = {}
        for item in reward_arg:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise GenlabError(f"--reward-arg {item!r}: expected key=value")
            options[key] = value
        prompts = list(prompt)
        if problems is not None:
            from genlab.metrics.code import read_problems

            prompts = [p.prompt for p in read_problems(problems)]
            options.setdefault("problems", str(problems))
        cfg = RLConfig.from_flags(reward=reward, reward_options=options, steps=steps, batch=batch, max_new_tokens=max_new_tokens, kl=kl, lr=lr, seed=seed,
                       prompts=tuple(prompts), log=tuple(trackers(log) or ()))
        summary = reinforce(Path(target), out, cfg, progress=not quiet)
        first, last = summary["first"], summary["last"]
        print(f"mean reward {first['reward']:.3f} -> {last['reward']:.3f}, KL to the start {last['kl']:.3f} nats per sequence",
              file=sys.stderr)
        print(f"run saved in {out} (metrics.jsonl, rl.png, rl.json)   next: genlab sample {out}", file=sys.stderr)
        return
    from genlab.rl.cartpole import CartPoleConfig, cartpole

    cfg = CartPoleConfig.from_flags(algo=algo, seed=seed, episodes=episodes or (1000 if algo == "q-learning" else 400),
                         log=tuple(trackers(log) or ()))
    out = out or Path("runs") / f"cartpole-{algo}"
    summary = cartpole(cfg, out, progress=not quiet)
    verdict = "solved" if summary["solved"] else "not solved (475 needed)"
    print(f"{algo}: mean return {summary['greedy_mean_return']:.1f} over {summary['greedy_episodes']} greedy episodes "
          f"after {summary['episodes_trained']} training episodes: {verdict}", file=sys.stderr)
    print(f"wrote {out}/summary.json, rewards.png, episode.gif and "
          f"{'q_table.npz' if algo == 'q-learning' else 'dqn.safetensors'}", file=sys.stderr)
