"""What a run shows and records as it trains: the progress bar (seconds under a time budget, else steps) and,
every `train.log_interval` steps, a row of the losses, learning rate and throughput (items per second of
training, eval time left out)."""

from __future__ import annotations

import time

import torch

from genlab.core.config import TrainConfig
from genlab.core.progress import progress_bar
from genlab.training.checkpointer import TrainState


class TrainingMeter:
    def __init__(self, cfg: TrainConfig, state: TrainState, show: bool, item_name: str, dtype: str):
        self.cfg, self.item_name, self.dtype, self.show = cfg, item_name, dtype, show
        self.by_time = cfg.max_time is not None  # the bar counts what ends the run
        self.bar = progress_bar(
            total=cfg.max_time if self.by_time else cfg.max_steps, initial=state.elapsed if self.by_time else state.step,
            desc="training", unit="s" if self.by_time else "step", enabled=show, dynamic_ncols=True,
            log_every=None,  # in a log, one line per eval instead (`plain`)
            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} {unit} [{elapsed}<{remaining}{postfix}]" if self.by_time else None)
        self.plain = show and self.bar.disable  # a log file or pipe: one line per eval, not a bar
        self.items, self.since = 0, time.perf_counter()

    def stepped(self, seconds: float, items: int) -> None:
        self.items += items
        self.bar.update(min(seconds, self.bar.total - self.bar.n) if self.by_time else 1)

    def row(self, state: TrainState, lr: float, logs: dict[str, float]) -> dict:
        """The log row of this step (losses averaged over ranks by the caller), shown beside the bar too."""
        now = time.perf_counter()
        rate = self.items / max(now - self.since, 1e-9)
        self.items, self.since = 0, now
        row = {"step": state.step, "lr": lr, "elapsed": round(state.elapsed, 3), f"{self.item_name}_per_s": round(rate, 1),
               **{k: round(v, 5) for k, v in logs.items()}}
        if state.planned_steps is not None:
            row["planned_steps"] = state.planned_steps
        if state.step == 1:  # the speed of a run depends on them: recorded once
            row["threads"] = torch.get_num_threads()
            row["dtype"] = self.dtype
        self.bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items()} | {f"{self.item_name}/s": f"{rate:,.0f}"})
        return row

    def evaluated(self, seconds: float) -> None:
        """An eval took `seconds`: not training throughput, but the run's time (a budget bounds the whole run)."""
        self.since = time.perf_counter()
        self.bar.update(min(seconds, self.bar.total - self.bar.n) if self.by_time else 0)

    def write(self, text: str) -> None:
        self.bar.write(text)

    def close(self) -> None:
        self.bar.close()
