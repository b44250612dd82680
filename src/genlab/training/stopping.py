"""When a run ends before `train.max_steps`, and which eval was its best: a time budget (turned into a step
count for the schedule once some steps are timed; one eval's time kept back for the last one), patience
(`train.patience` evals without a better score), and the best eval (`train.keep = "best"` keeps its weights)."""

from __future__ import annotations

from genlab.training import distributed
from genlab.core.config import TrainConfig
from genlab.training.checkpointer import TrainState
from genlab.training.schedule import PLAN_AFTER_STEPS, plan_steps


class StoppingRules:
    def __init__(self, cfg: TrainConfig, world, metric: str = "val_loss"):
        self.cfg, self.world = cfg, world
        self.metric = metric  # lower is better: val loss, or a GAN's FID
        self.eval_seconds = 0.0  # how long the last periodic eval took (with its samples): kept back from the budget
        self.started_at = 0  # the step this process began at
        self.timed_from: tuple[int, float] | None = None  # (step, elapsed) its timing begins at

    def start(self, state: TrainState) -> None:
        self.started_at, self.timed_from = state.step, None

    def plan(self, state: TrainState) -> None:
        """Under a time budget, fix the schedule's length once PLAN_AFTER_STEPS steps of this process are timed
        (its first step left out: it carries one-off costs)."""
        if not self.cfg.max_time or state.planned_steps is not None:
            return
        if self.timed_from is None:
            if state.step > self.started_at:
                self.timed_from = (state.step, state.elapsed)
        elif state.step - self.timed_from[0] >= PLAN_AFTER_STEPS:
            state.planned_steps = plan_steps(self.cfg, state.step, state.elapsed, *self.timed_from)
            state.planned_for = self.cfg.max_time

    def improved(self, state: TrainState, results: dict) -> bool:
        """Score an eval: True when it is the best so far (its weights are the ones to keep)."""
        value = results.get(self.metric)
        if value is None:
            return False
        if state.best is None or value < state.best["value"]:
            state.best = {"step": state.step, "elapsed": round(state.elapsed, 3), "metric": self.metric, "value": value}
            state.evals_since_best = 0
            return True
        state.evals_since_best += 1
        return False

    def out_of_patience(self, state: TrainState) -> bool:
        return self.cfg.patience is not None and state.evals_since_best >= self.cfg.patience

    def out_of_time(self, state: TrainState) -> bool:
        if not self.cfg.max_time:
            return False
        # One eval's time is kept back for the run's last eval. Ranks' clocks differ: rank 0 decides for all.
        return distributed.agree(state.elapsed + self.eval_seconds >= self.cfg.max_time, self.world)

    def time_left(self, state: TrainState) -> float | None:
        return self.cfg.max_time - state.elapsed if self.cfg.max_time else None

    # ---- what a spent budget leaves out (the trainer logs and prints the note) ----

    def samples_unaffordable(self, state: TrainState, run_path) -> str | None:
        """At the end of a spent time budget that no periodic eval has measured, writing samples would be the one
        cost the budget never saw (a PixelCNN's grid: 90 s after a 6 s budget): the note saying they are skipped."""
        left = self.time_left(state)
        if left is None or left > 0 or self.eval_seconds > 0:
            return None
        return (f"no samples at step {state.step}: the --max-time budget ended before a first eval could time them "
                f"(`genlab sample {run_path}` makes some)")

    def final_eval_unaffordable(self, state: TrainState, run_path) -> str | None:
        """Scoring the kept weights on the whole val split runs only where the time left holds four periodic
        evals; else the note saying it did not. Every rank agrees with rank 0."""
        left = self.time_left(state)
        if left is None or not distributed.agree(left < 4 * self.eval_seconds, self.world):
            return None
        return (f"the --max-time budget leaves {max(left, 0):.0f} s: the kept weights were not scored on the whole "
                f"val split (`genlab eval {run_path}` does it)")
