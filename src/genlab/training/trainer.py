"""The one training loop, for every modality.

    get batch -> forward -> backward -> clip -> step -> (EMA) -> log -> eval every N -> checkpoint every N
    at the end: eval, checkpoint, then the kept weights scored on the whole val split

It knows nothing of modalities: an objective (genlab.objectives) turns a
batch into losses; `batches` yields batches and can save its position; the
caller's `evaluate` and `write_samples` run at each eval. A checkpoint holds
weights, optimizer state, step, RNG and batch-sampler state, so a run killed
at any moment and resumed ends with exactly the weights of a run never
interrupted.

model.safetensors holds the weights with the best eval seen (val loss; FID for GANs) (`train.keep = "best"`, written at each
improvement, so a served or killed run always has its best) or the last ones (`"last"`); `train.patience`
stops a run after that many evals without improvement. Periodic evals score `eval_batches` batches; the
final score, on the whole val split, is of the weights kept.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Callable

import torch

from genlab.training import distributed
from genlab.core.config import TrainConfig
from genlab.training.distributed import pick_device
from genlab.core.errors import GenlabError, Interrupted
from genlab.core.runs import RunDir, load_tensors
from genlab.training.checkpointer import Checkpointer, TrainState
from genlab.training.distribution import Distribution
from genlab.training.ema import EMA
from genlab.training.keeper import WeightsKeeper
from genlab.training.meter import TrainingMeter
from genlab.training.runlog import RunLog
from genlab.training.schedule import compute_dtype, learning_rate, make_optimizer
from genlab.training.signals import stop_signals
from genlab.training.stopping import StoppingRules
from genlab.core.weights import bundle_of


class Trainer:
    def __init__(
        self,
        objective,
        batches,
        cfg: TrainConfig,
        run: RunDir,
        evaluate: Callable[[], dict[str, float]] | None = None,
        write_samples: Callable[[int, dict], None] | None = None,
        items_per_batch: int = 1,
        item_name: str = "tok",
        select_metric: str = "val_loss",
        run_config: dict | None = None,  # the run's whole resolved config, for trackers to record
        on_eval: Callable[[int, dict], None] | None = None,  # hears each periodic eval (a sweep's pruner)
        evaluate_takes_weights: bool = False,  # evaluate(weights=...): the sampling weights (tasks/driver.Training)
    ):
        self.objective, self.batches, self.cfg, self.run = objective, batches, cfg, run
        self.evaluate, self.write_samples, self.on_eval = evaluate, write_samples, on_eval
        self.evaluate_takes_weights = evaluate_takes_weights
        self.items_per_batch, self.item_name = items_per_batch, item_name
        self.world = distributed.world()
        self.device = pick_device(cfg.device, self.world.local_rank)
        self.dtype = compute_dtype(cfg.dtype, self.device)
        if self.device.type == "cuda":  # float32 matmuls on tensor cores (TF32), as nanoGPT and most GPU recipes do
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        if self.world.is_main:
            run.path.mkdir(parents=True, exist_ok=True)
        self.bundle = bundle_of(objective.modules).to(self.device)
        self.distribution = Distribution(objective.players, cfg.shard, self.world, self.device)
        self.optimizers = {name: make_optimizer(m, cfg, self.device) for name, m in objective.players.items()}
        self.ema = EMA(objective.modules, cfg.ema_decay) if cfg.ema_decay is not None else None
        self.weights = WeightsKeeper(run, cfg.keep, objective.modules, self.ema, self.distribution, self.world)
        self.checkpointer = Checkpointer(run, self.world, self.device, self.distribution.sharded)
        self.stopping = StoppingRules(cfg, self.world, select_metric)  # lower is better: picks the weights kept
        self.state = TrainState()
        self.run_config = run_config or {"train": cfg.model_dump(mode="json")}
        self.log: RunLog | None = None  # opened by fit(), once it is known whether this run resumes
        self.meter: TrainingMeter | None = None
        self._last_eval: tuple[int | None, dict] = (None, {})  # (step, results) of the latest eval

    def save_checkpoint(self) -> None:
        self.checkpointer.save(self.objective, self.optimizers, self.batches, self.ema, self.state)

    def load_checkpoint(self) -> None:
        self.state = self.checkpointer.load(self.objective, self.optimizers, self.batches, self.ema, self.cfg.max_time)

    # ---- the loop ----------------------------------------------------------------

    def fit(self) -> dict:
        cfg, s = self.cfg, self.state
        self.log = RunLog(self.run, self.world.is_main, cfg.log, self.run_config, resumed_at=s.step or None)
        self.meter = TrainingMeter(cfg, s, cfg.progress and s.step < cfg.max_steps and self.world.is_main,
                                   self.item_name, self.dtype)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.dtype == "bfloat16")
        self.bundle.train()
        self.stopping.start(s)
        last = {}
        with stop_signals(enabled=not self.world.active) as stop:
            while s.step < cfg.max_steps and not self.stopping.out_of_time(s) and not self.stopping.out_of_patience(s):
                if stop.signum is not None:
                    self._stop(stop.signum)
                t0 = time.perf_counter()
                logs = self._run_step(autocast)
                lr = logs.pop("lr")
                s.step += 1
                s.items += self.items_per_batch * cfg.grad_accum
                dt = time.perf_counter() - t0
                s.elapsed += dt
                self.meter.stepped(dt, self.items_per_batch * cfg.grad_accum)
                if s.step % cfg.log_interval == 0 or s.step == 1:
                    last = self.meter.row(s, lr, distributed.average_scalars(logs, self.world))
                    self.log.write(last)
                if s.step % cfg.eval_interval == 0 and s.step < cfg.max_steps and self._periodic_eval():
                    break
                if s.step % cfg.checkpoint_interval == 0:
                    self.save_checkpoint()
        self.meter.close()
        results = self._eval(final=True)
        self.save_checkpoint()
        self.weights.save(s)
        results |= self._final_eval()
        self.log.finish()
        return {**last, **results, "step": s.step, "elapsed": round(s.elapsed, 3)}

    def _run_step(self, autocast) -> dict[str, float]:
        """One optimizer step of every player (with gradient accumulation); returns the mean logs."""
        cfg, s = self.cfg, self.state
        self.stopping.plan(s)
        lr = learning_rate(cfg, s.step, s.planned_steps)
        for opt in self.optimizers.values():
            for g in opt.param_groups:
                g["lr"] = lr
        logs: dict[str, float] = {"lr": lr}
        for micro in range(cfg.grad_accum):
            self.distribution.sync_gradients(micro == cfg.grad_accum - 1)
            batch = distributed.shard(next(self.batches), self.world)
            if self.device.type == "cuda":  # page-locked, so the copy overlaps the GPU's work (as nanoGPT does)
                batch = tuple(t.pin_memory() for t in batch)
            batch = tuple(t.to(self.device, non_blocking=True) for t in batch)
            with autocast:
                for player, loss, step_logs in self.objective.losses(batch):
                    if not torch.isfinite(loss):
                        raise GenlabError(f"training diverged at step {s.step} (loss is {loss.item()}); lower --lr")
                    (loss / cfg.grad_accum).backward()
                    for k, v in step_logs.items():
                        logs[k] = logs.get(k, 0.0) + v / cfg.grad_accum
                    if micro == cfg.grad_accum - 1:
                        self._step_player(player)
                        self.distribution.stepped(player)
        if self.ema is not None:
            self.ema.update(self.objective.modules, s.step)
        return logs

    def _step_player(self, player: str) -> None:
        opt = self.optimizers[player]
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], self.cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def _stop(self, signum: int) -> None:
        """Checkpoint this exact step, then end the run with `Interrupted` (the CLI exits 128 + signum)."""
        self.meter.close()
        self.save_checkpoint()
        self.weights.save(self.state)
        self.log.finish()
        name = signal.Signals(signum).name
        raise Interrupted(f"{name} at step {self.state.step}: checkpoint saved in {self.run.checkpoint}; "
                          "run the same command again to resume", signum)

    # ---- evals -------------------------------------------------------------------

    def _periodic_eval(self) -> bool:
        """Evaluate mid-run (its time counts against a budget); True when patience says the run ends here."""
        s, cfg = self.state, self.cfg
        began = time.perf_counter()
        self._eval()
        self.stopping.eval_seconds = distributed.from_main(time.perf_counter() - began, self.world)
        s.elapsed += self.stopping.eval_seconds
        self.meter.evaluated(self.stopping.eval_seconds)
        if not distributed.agree(self.stopping.out_of_patience(s), self.world):  # rank 0 alone keeps score
            return False
        metric = s.best["metric"].replace("_", " ") if s.best else "score"
        if self.world.is_main:
            self.log.write({"step": s.step, "stopped_early": f"no better {metric} in {cfg.patience} evals",
                            "best_step": s.best["step"]})
        if self.meter.show:
            self.meter.write(f"stopping early at step {s.step}: {metric} has not improved on step "
                             f"{s.best['step']} ({s.best['value']:.4f}) in {cfg.patience} evals")
        return True

    def _eval(self, final: bool = False) -> dict:
        with self.weights.whole():
            if not self.world.is_main:
                return {}
            if self._last_eval[0] == self.state.step:  # a run stopped early ends where it was just evaluated
                results = self._last_eval[1]
            else:
                results = self._evaluate_and_log(samples=not (final and self._samples_unaffordable()))
        self.log.plot(final)
        return results

    def _samples_unaffordable(self) -> bool:
        note = self.stopping.samples_unaffordable(self.state, self.run.path) if self.write_samples else None
        if note is not None:
            self.log.write({"step": self.state.step, "samples_skipped": note})
            print(note, file=sys.stderr, flush=True)
        return note is not None

    def _evaluate_and_log(self, samples: bool = True) -> dict:
        s = self.state
        self.bundle.eval()
        try:
            with torch.no_grad():
                if self.evaluate is None:
                    results = {}
                else:
                    results = self.evaluate(weights=self.weights.sampling()) if self.evaluate_takes_weights else self.evaluate()
                if self.write_samples and samples:
                    self.write_samples(s.step, self.weights.sampling())
        finally:
            self.bundle.train()
        if self.stopping.improved(s, results):
            self.weights.improved(s)
        scope = {"val_batches": self.cfg.eval_batches} if results else {}
        self.log.write({"step": s.step, "elapsed": round(s.elapsed, 3), **results, **scope})
        self.log.samples(s.step)
        if self.meter.plain and results:
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in results.items())
            print(f"step {s.step} ({s.elapsed:.0f} s): {shown}", file=sys.stderr, flush=True)
        self._last_eval = (s.step, results)
        if self.on_eval is not None and results:
            self.on_eval(s.step, results)
        return results

    def _final_eval(self) -> dict:
        """The kept weights (model.safetensors) scored on the whole val split: what `genlab eval` reports.
        Under a time budget it runs only where the time left holds four periodic evals; else it says so."""
        if self.evaluate is None or not (self.world.is_main or self.distribution.sharded):
            return {}
        note = self.stopping.final_eval_unaffordable(self.state, self.run.path)
        if note is not None:
            if self.world.is_main:
                self.log.write({"step": self.state.step, "final_skipped": note})
                print(note, file=sys.stderr, flush=True)
            return {"final_skipped": note}
        if self.distribution.sharded:
            distributed.barrier(self.world)  # every rank loads what rank 0 has just written
        self.checkpointer.restore_weights(self.objective.modules, load_tensors(self.run.weights), self.run.weights)
        self.bundle.eval()
        with self.weights.whole(), torch.no_grad():
            if not self.world.is_main:
                return {}
            results = self.evaluate(full=True)
        kept = self.weights.kept_step(self.state)
        self.log.write({"step": self.state.step, "elapsed": round(self.state.elapsed, 3), "kept_step": kept,
                        **{f"final_{k}": v for k, v in results.items()}, "val_batches": "all"})
        return {**results, "kept_step": kept}
