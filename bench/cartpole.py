"""CartPole-v1 with tabular Q-learning and with a DQN: mean return over 100 greedy episodes.

    python bench/cartpole.py [--q-episodes 1000] [--dqn-episodes 600]

Runs `genlab rl cartpole` for both algorithms (seed 0, one thread) and records their summaries: the mean and
minimum greedy return over 100 unseen episodes, the training episodes, and the first training episode at which
the mean of the last 100 training returns reached 475. Writes bench/results/cartpole.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "cartpole.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--q-episodes", type=int, default=1000)
    p.add_argument("--dqn-episodes", type=int, default=600)
    args = p.parse_args()
    import tempfile

    import torch

    from genlab.rl.cartpole import CartPoleConfig, cartpole

    torch.set_num_threads(1)
    load_avg = list(os.getloadavg())
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = []
    for algo, episodes in (("q-learning", args.q_episodes), ("dqn", args.dqn_episodes)):
        out = Path(tempfile.mkdtemp(prefix="genlab-bench-cartpole-")) / algo
        t0 = time.perf_counter()
        summary = cartpole(CartPoleConfig(algo=algo, episodes=episodes), out, progress=False)
        summary.pop("config")
        rows.append({**summary, "wall_s": round(time.perf_counter() - t0, 1)})
        print(rows[-1], flush=True)
    results = {"date": started, "load_avg_at_start": load_avg,
               "command": f"python bench/cartpole.py --q-episodes {args.q_episodes} --dqn-episodes {args.dqn_episodes}",
               "rows": rows}
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
