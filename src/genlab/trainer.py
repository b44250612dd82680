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
from contextlib import contextmanager
from typing import Callable

import torch

from genlab import distributed
from genlab.config import TrainConfig
from genlab.distributed import pick_device
from genlab.errors import GenlabError, Interrupted
from genlab.progress import progress_bar
from genlab.runs import RunDir, load_tensors, save_tensors
from genlab.training.checkpointer import Checkpointer, TrainState
from genlab.training.ema import EMA
from genlab.training.runlog import RunLog
from genlab.training.schedule import compute_dtype, learning_rate, make_optimizer
from genlab.training.signals import stop_signals
from genlab.training.stopping import StoppingRules
from genlab.weights import bundle_of, weights_of

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
    ):
        self.objective = objective
        self.batches = batches
        self.cfg = cfg
        self.run = run
        self.evaluate = evaluate
        self.write_samples = write_samples
        self.items_per_batch = items_per_batch
        self.item_name = item_name
        self.world = distributed.world()
        self.device = pick_device(cfg.device, self.world.local_rank)
        self.dtype = compute_dtype(cfg.dtype, self.device)
        if self.device.type == "cuda":  # float32 matmuls on tensor cores (TF32), as nanoGPT and most GPU recipes do
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        if self.world.is_main:
            run.path.mkdir(parents=True, exist_ok=True)
        self.bundle = bundle_of(objective.modules).to(self.device)
        self.replicas = {}  # player -> its module under torch's DDP or FSDP engine (torchrun only)
        self.sharded = self.world.active and cfg.shard == "fsdp"
        if self.world.active:
            engine = distributed.shard_fully if self.sharded else distributed.replicate
            self.replicas = {name: engine(m, self.device) for name, m in objective.players.items()}
        self.optimizers = {name: make_optimizer(m, cfg, self.device) for name, m in objective.players.items()}
        self.ema = EMA(objective.modules, cfg.ema_decay) if cfg.ema_decay is not None else None
        self.checkpointer = Checkpointer(run, self.world, self.device, self.sharded)
        self.stopping = StoppingRules(cfg, self.world, select_metric)  # lower is better: picks the weights kept
        self.state = TrainState()
        self.run_config = run_config or {"train": cfg.model_dump(mode="json")}
        self.on_eval = on_eval
        self.log: RunLog | None = None  # opened by fit(), once it is known whether this run resumes
        self._last_eval: tuple[int | None, dict] = (None, {})  # (step, results) of the latest eval
        self._whole_sampling_weights = None  # under FSDP, while `_whole_weights` holds them gathered

    @contextmanager
    def _whole_weights(self):
        """Under FSDP every rank gathers the whole weights (and EMA), so that rank 0 alone can evaluate, sample
        and save while the others wait; elsewhere a no-op. Enter on every rank."""
        if not self.sharded:
            yield
            return
        # Gathered before the unshard: reading a state dict puts FSDP's parameters back into shards.
        self._whole_sampling_weights = distributed.full_tensors(self.sampling_weights())
        try:
            with distributed.whole_weights(self.replicas.values()):
                yield
        finally:
            self._whole_sampling_weights = None

    # ---- checkpoints (training/checkpointer.py) ----------------------------------

    def save_checkpoint(self) -> None:
        self.checkpointer.save(self.objective, self.optimizers, self.batches, self.ema, self.state)

    def load_checkpoint(self) -> None:
        self.state = self.checkpointer.load(self.objective, self.optimizers, self.batches, self.ema, self.cfg.max_time)

    # ---- the loop ----------------------------------------------------------------

    def _eval(self, final: bool = False) -> dict:
        with self._whole_weights():
            if not self.world.is_main:
                return {}
            if self._last_eval[0] == self.state.step:  # a run stopped early ends where it was just evaluated
                results = self._last_eval[1]
            else:
                results = self._evaluate_and_log(samples=not (final and self._samples_unaffordable()))
        self.log.plot(final)
        return results

    def _samples_unaffordable(self) -> bool:
        """At the end of a spent time budget that no periodic eval has measured, writing samples would be the one
        cost the budget never saw (a PixelCNN's grid: 90 s after a 6 s budget): skipped, and said."""
        left = self.stopping.time_left(self.state)
        if self.write_samples is None or left is None or left > 0 or self.stopping.eval_seconds > 0:
            return False
        note = (f"no samples at step {self.state.step}: the --max-time budget ended before a first eval could time them "
                f"(`genlab sample {self.run.path}` makes some)")
        self.log.write({"step": self.state.step, "samples_skipped": note})
        print(note, file=sys.stderr, flush=True)
        return True

    def _evaluate_and_log(self, samples: bool = True) -> dict:
        self.bundle.eval()
        try:
            with torch.no_grad():
                results = self.evaluate() if self.evaluate else {}
                if self.write_samples and samples:
                    self.write_samples(self.state.step, self.sampling_weights())
        finally:
            self.bundle.train()
        self._consider(results)
        scope = {"val_batches": self.cfg.eval_batches} if results else {}
        self.log.write({"step": self.state.step, "elapsed": round(self.state.elapsed, 3), **results, **scope})
        self.log.samples(self.state.step)
        if self.plain_progress and results:  # a log file or pipe gets one line per eval, not a bar
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in results.items())
            print(f"step {self.state.step} ({self.state.elapsed:.0f} s): {shown}", file=sys.stderr, flush=True)
        self._last_eval = (self.state.step, results)
        if self.on_eval is not None and results:
            self.on_eval(self.state.step, results)
        return results

    def _consider(self, results: dict) -> None:
        """Score the eval; where the best weights are kept, a new best is written at once."""
        if self.stopping.improved(self.state, results) and self.cfg.keep == "best":
            save_tensors(self.run.weights, self.sampling_weights(), self._weights_metadata())

    def _final_eval(self) -> dict:
        """The kept weights (model.safetensors) scored on the whole val split: what `genlab eval` reports.
        Under a time budget it runs only where the time left holds four periodic evals; else it says so."""
        if self.evaluate is None or not (self.world.is_main or self.sharded):
            return {}
        left = self.stopping.time_left(self.state)
        if left is not None and distributed.agree(left < 4 * self.stopping.eval_seconds, self.world):
            note = (f"the --max-time budget leaves {max(left, 0):.0f} s: the kept weights were not scored on the whole "
                    f"val split (`genlab eval {self.run.path}` does it)")
            if self.world.is_main:
                self.log.write({"step": self.state.step, "final_skipped": note})
                print(note, file=sys.stderr, flush=True)
            return {"final_skipped": note}
        if self.sharded:
            distributed.barrier(self.world)  # every rank loads what rank 0 has just written
        self.checkpointer.restore_weights(self.objective.modules, load_tensors(self.run.weights), self.run.weights)
        self.bundle.eval()
        with self._whole_weights(), torch.no_grad():
            if not self.world.is_main:
                return {}
            results = self.evaluate(full=True)
        kept = self.state.best["step"] if self.cfg.keep == "best" and self.state.best else self.state.step
        row = {"step": self.state.step, "elapsed": round(self.state.elapsed, 3), "kept_step": kept,
               **{f"final_{k}": v for k, v in results.items()}, "val_batches": "all"}
        self.log.write(row)
        return {**results, "kept_step": kept}

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
            if self.replicas:  # all-reduce on the last micro-batch only
                distributed.set_gradient_sync(self.replicas.values(), micro == cfg.grad_accum - 1)
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
                        if self.replicas:  # stepped: its later forwards this step feed other players' losses only
                            distributed.set_gradient_sync([self.replicas[player]], False)
        if self.ema is not None:
            self.ema.update(self.objective.modules, s.step)
        return logs

    def fit(self) -> dict:
        cfg, s = self.cfg, self.state
        self.log = RunLog(self.run, self.world.is_main, cfg.log, self.run_config, resumed_at=s.step or None)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.dtype == "bfloat16")
        self.bundle.train()
        # With a time budget the bar counts seconds, else steps: whichever ends the run.
        by_time = cfg.max_time is not None
        show = cfg.progress and s.step < cfg.max_steps and self.world.is_main
        bar = progress_bar(total=cfg.max_time if by_time else cfg.max_steps, initial=s.elapsed if by_time else s.step,
                           desc="training", unit="s" if by_time else "step", enabled=show, dynamic_ncols=True,
                           log_every=None,  # in a log, one line per eval instead (plain_progress)
                           bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} {unit} [{elapsed}<{remaining}{postfix}]" if by_time else None)
        self.plain_progress = show and bar.disable
        self.stopping.start(s)
        last = {}
        window_items, window_start = 0, time.perf_counter()
        with stop_signals(enabled=not self.world.active) as stop:
            while s.step < cfg.max_steps and not self.stopping.out_of_time(s) and not self.stopping.out_of_patience(s):
                if stop.signum is not None:
                    bar.close()
                    self._stop(stop.signum)
                t0 = time.perf_counter()
                logs = self._run_step(autocast)
                lr = logs.pop("lr")
                s.step += 1
                s.items += self.items_per_batch * cfg.grad_accum
                window_items += self.items_per_batch * cfg.grad_accum
                dt = time.perf_counter() - t0
                s.elapsed += dt
                bar.update(min(dt, bar.total - bar.n) if by_time else 1)
                if s.step % cfg.log_interval == 0 or s.step == 1:
                    logs = distributed.average_scalars(logs, self.world)
                    now = time.perf_counter()
                    rate = window_items / max(now - window_start, 1e-9)
                    window_items, window_start = 0, now
                    last = {"step": s.step, "lr": lr, "elapsed": round(s.elapsed, 3), f"{self.item_name}_per_s": round(rate, 1), **{k: round(v, 5) for k, v in logs.items()}}
                    if s.planned_steps is not None:
                        last["planned_steps"] = s.planned_steps
                    if s.step == 1:  # the speed of a run depends on them: recorded once
                        last["threads"] = torch.get_num_threads()
                        last["dtype"] = self.dtype
                    self.log.write(last)
                    bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items()} | {f"{self.item_name}/s": f"{rate:,.0f}"})
                if s.step % cfg.eval_interval == 0 and s.step < cfg.max_steps:
                    began = time.perf_counter()
                    self._eval()
                    window_start = time.perf_counter()  # eval time is not training throughput
                    # ... but it is the run's time: a time budget bounds the whole run, evals and samples included
                    self.stopping.eval_seconds = distributed.from_main(window_start - began, self.world)
                    s.elapsed += self.stopping.eval_seconds
                    bar.update(min(self.stopping.eval_seconds, bar.total - bar.n) if by_time else 0)
                    if distributed.agree(self.stopping.out_of_patience(s), self.world):  # rank 0 alone keeps score
                        if self.world.is_main:
                            metric = s.best["metric"].replace("_", " ")
                            self.log.write({"step": s.step, "stopped_early": f"no better {metric} in {cfg.patience} evals",
                                       "best_step": s.best["step"]})
                        if show:
                            bar.write(f"stopping early at step {s.step}: {metric} has not improved on step "
                                      f"{s.best['step']} ({s.best['value']:.4f}) in {cfg.patience} evals")
                        break
                if s.step % cfg.checkpoint_interval == 0:
                    self.save_checkpoint()
        bar.close()
        results = self._eval(final=True)
        self.save_checkpoint()
        self.save_weights()
        results |= self._final_eval()
        self.log.finish()
        return {**last, **results, "step": s.step, "elapsed": round(s.elapsed, 3)}

    def _stop(self, signum: int) -> None:
        """Checkpoint this exact step, then end the run with `Interrupted` (the CLI exits 128 + signum)."""
        self.save_checkpoint()
        self.save_weights()
        self.log.finish()
        name = signal.Signals(signum).name
        raise Interrupted(f"{name} at step {self.state.step}: checkpoint saved in {self.run.checkpoint}; "
                          "run the same command again to resume", signum)

    def _step_player(self, player: str) -> None:
        opt = self.optimizers[player]
        params = [p for g in opt.param_groups for p in g["params"]]
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def sampling_weights(self) -> dict:
        """The weights samples are drawn with: the EMA weights where EMA is on, else the live ones."""
        if self._whole_sampling_weights is not None:
            return self._whole_sampling_weights
        return self.ema.tensors if self.ema is not None else weights_of(self.objective.modules)

    def save_weights(self) -> None:
        """model.safetensors: the weights samples are drawn with, unless the best ones are kept (written by
        `_consider` when they were seen)."""
        weights = distributed.full_tensors(self.sampling_weights()) if self.sharded else self.sampling_weights()
        if self.world.is_main and not (self.cfg.keep == "best" and self.state.best is not None):
            save_tensors(self.run.weights, weights, self._weights_metadata())

    def _weights_metadata(self) -> dict[str, str]:
        """What model.safetensors records of itself (a server shows it, and swaps the weights in when it changes)."""
        best = self.state.best if self.cfg.keep == "best" else None
        if best is not None:
            return {"step": str(best["step"]), "metric": best["metric"], "value": repr(best["value"])}
        return {"step": str(self.state.step)}
