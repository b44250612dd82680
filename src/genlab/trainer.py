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

import json
import math
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from genlab import distributed
from genlab.config import TrainConfig
from genlab.distributed import pick_device
from genlab.errors import GenlabError, Interrupted
from genlab.files import atomic_write_json
from genlab.progress import progress_bar
from genlab.runs import (RunDir, checkpoint_folder_for_writing, commit_checkpoint, load_tensors,
                         remove_stale_checkpoints, save_tensors)
from genlab.weights import bundle_of, load_weights, weights_of


def learning_rate(cfg: TrainConfig, step: int, total_steps: int | None = None) -> float:
    """Linear warmup, then cosine decay to lr*min_lr_ratio at `total_steps` (default: max_steps).

    A function of the step alone, so a resumed run follows exactly the schedule of one never stopped;
    a time budget becomes a step estimate once (see `plan_steps`), recorded in the checkpoint."""
    total = total_steps or cfg.max_steps
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * progress))


# loss.png is redrawn at most this often during training (drawing costs ~0.25 s), and always at the end.
PLOT_EVERY_SECONDS = 30.0

# Steps timed before a time budget is turned into a step count for the schedule.
PLAN_AFTER_STEPS = 10


def plan_steps(cfg: TrainConfig, step: int, elapsed: float, since_step: int = 0, since_elapsed: float = 0.0) -> int:
    """How many steps fit in the time budget: at `step`, `elapsed` seconds in, timing the steps taken since
    `since_step` (`since_elapsed` seconds in). The first step a process takes is left out of the timing: it
    carries one-off costs (torch.compile compiles there: tens of seconds, against milliseconds a step)."""
    per_step = (elapsed - since_elapsed) / max(step - since_step, 1)
    return min(cfg.max_steps, max(step + 1, step + int((cfg.max_time - elapsed) / max(per_step, 1e-9))))


def compute_dtype(choice: str, device: torch.device) -> str:
    """train.dtype -> "float32" or "bfloat16" (autocast): `auto` takes bfloat16 on a CUDA GPU that has it."""
    if choice != "auto":
        return choice
    return "bfloat16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "float32"


def make_optimizer(module: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    # Decay matrices (weights, embeddings) but not biases and norm gains, as is usual for transformers.
    params = [p for p in module.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel updates every parameter in one pass (CPU and CUDA): on this project's CPU, timed side by
    # side with the foreach kernels, it took nanoGPT's CPU shape from 45 % to 54 % of the matmul peak.
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=device.type in ("cpu", "cuda"))


@dataclass
class StopRequest:
    signum: int | None = None  # the signal that asked training to stop, once one has


@contextmanager
def stop_signals(enabled: bool = True):
    """While inside, SIGINT and SIGTERM only set `.signum`, so the loop stops at a step boundary;
    a second Ctrl-C interrupts at once. Outside the main thread nothing is installed."""
    stop = StopRequest()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        stop.signum = signum
        signal.signal(signum, previous[signum])  # the next one acts at once

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


@dataclass
class TrainState:
    step: int = 0
    items: int = 0  # tokens (or images) consumed
    elapsed: float = 0.0  # seconds of training so far, across resumes
    planned_steps: int | None = None  # the schedule's length under a time budget (None: max_steps)
    planned_for: float | None = None  # the time budget that plan was made for (a resume with another re-plans)
    best: dict | None = None  # step, elapsed and val_loss of the best eval so far
    evals_since_best: int = 0


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
    ):
        self.objective = objective
        self.batches = batches
        self.cfg = cfg
        self.run = run
        self.evaluate = evaluate
        self.write_samples = write_samples
        self.items_per_batch = items_per_batch
        self.item_name = item_name
        self.select_metric = select_metric  # lower is better; picks the weights model.safetensors keeps
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
        self.ema = None
        if cfg.ema_decay is not None:
            self.ema = {k: v.detach().clone().float() for k, v in weights_of(objective.modules).items()}
        self.state = TrainState()
        self._plotted = time.perf_counter()  # when loss.png was last drawn (first: 30 s in, or at the end)
        self._eval_seconds = 0.0  # how long the last periodic eval took (with its samples): kept back from a time budget
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

    def _load_weights(self, tensors: dict, origin: Path) -> None:
        if self.sharded:  # whole tensors from the file, cut into this rank's shards
            tensors = distributed.shard_like(tensors, bundle_of(self.objective.modules).state_dict())
        load_weights(self.objective.modules, tensors, origin)

    # ---- checkpoints -------------------------------------------------------------

    def save_checkpoint(self) -> None:
        weights, ema = weights_of(self.objective.modules), self.ema
        optimizers = {name: opt.state_dict() for name, opt in self.optimizers.items()}
        if self.sharded:  # every rank joins in gathering the shards; rank 0 writes them whole
            weights, ema = distributed.full_tensors(weights), ema and distributed.full_tensors(ema)
            for sd in optimizers.values():
                sd["state"] = {idx: distributed.full_tensors(slots) for idx, slots in sd["state"].items()}
        if not self.world.is_main:
            return
        tmp = checkpoint_folder_for_writing(self.run.checkpoint)
        save_tensors(tmp / "model.safetensors", weights)
        tensors, groups = {}, {}
        for name, sd in optimizers.items():
            groups[name] = sd["param_groups"]
            for idx, slots in sd["state"].items():
                for slot, t in slots.items():
                    tensors[f"optimizer/{name}/{idx}/{slot}"] = t
        tensors["rng/torch"] = torch.get_rng_state()
        if self.device.type == "cuda":
            tensors["rng/cuda"] = torch.cuda.get_rng_state(self.device)
        for key, t in self.batches.state_dict().items():
            tensors[f"batches/{key}"] = t
        for key, t in getattr(self.objective, "state_dict", dict)().items():  # e.g. a carried RNN state
            tensors[f"objective/{key}"] = t
        save_tensors(tmp / "state.safetensors", tensors)
        if ema is not None:
            save_tensors(tmp / "ema.safetensors", ema)
        s = self.state
        atomic_write_json(tmp / "state.json", {"step": s.step, "items": s.items, "elapsed": s.elapsed,
                                               "planned_steps": s.planned_steps, "planned_for": s.planned_for, "best": s.best,
                                               "evals_since_best": s.evals_since_best, "param_groups": groups})
        commit_checkpoint(tmp, self.run.checkpoint, s.step)

    def load_checkpoint(self) -> None:
        folder = self.run.latest_checkpoint()
        if self.world.is_main:
            remove_stale_checkpoints(self.run.checkpoint)
        if folder is None:
            raise GenlabError(f"{self.run.checkpoint}: no complete checkpoint to resume from")
        try:
            meta = json.loads((folder / "state.json").read_text())
            absent = [k for k in ("step", "items", "elapsed", "param_groups") if k not in meta]
            if absent:
                raise KeyError(f"no {absent[0]!r}")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise GenlabError(f"{folder / 'state.json'}: unreadable or incomplete ({e}); pass --overwrite to start afresh") from None
        self._load_weights(load_tensors(folder / "model.safetensors"), folder / "model.safetensors")
        tensors = load_tensors(folder / "state.safetensors")
        try:
            self._restore(meta, tensors, folder)
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            raise GenlabError(f"{folder}: checkpoint does not fit this run ({str(e).splitlines()[0][:200]}); "
                              "pass --overwrite to start afresh") from None
        planned_for = meta.get("planned_for", self.cfg.max_time)
        replan = planned_for != self.cfg.max_time  # resumed with another --max-time: plan the schedule afresh
        self.state = TrainState(step=meta["step"], items=meta["items"], elapsed=meta["elapsed"],
                                planned_steps=None if replan else meta.get("planned_steps"),
                                planned_for=None if replan else planned_for, best=meta.get("best"),
                                evals_since_best=meta.get("evals_since_best", 0))
        self._truncate_metrics(meta["step"])

    def _restore(self, meta: dict, tensors: dict, folder: Path) -> None:
        for name, opt in self.optimizers.items():
            state: dict[int, dict] = {}
            prefix = f"optimizer/{name}/"
            for key, t in tensors.items():
                if key.startswith(prefix):
                    idx, slot = key[len(prefix):].split("/")
                    state.setdefault(int(idx), {})[slot] = t.to(self.device) if slot != "step" else t
            if self.sharded:
                params = [p for g in opt.param_groups for p in g["params"]]
                state = {idx: distributed.shard_like(slots, {slot: params[idx] for slot in slots if slot != "step"})
                         for idx, slots in state.items()}
            opt.load_state_dict({"state": state, "param_groups": meta["param_groups"][name]})
        torch.set_rng_state(tensors["rng/torch"])
        if "rng/cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng/cuda"], self.device)
        self.batches.load_state_dict({k.removeprefix("batches/"): t for k, t in tensors.items() if k.startswith("batches/")})
        if hasattr(self.objective, "load_state_dict"):
            self.objective.load_state_dict({k.removeprefix("objective/"): t for k, t in tensors.items() if k.startswith("objective/")})
        if self.ema is not None:
            ema = {k: v.to(self.device) for k, v in load_tensors(folder / "ema.safetensors").items()}
            self.ema = distributed.shard_like(ema, self.ema) if self.sharded else ema

    def _truncate_metrics(self, step: int) -> None:
        # Rows logged after the checkpoint will be logged again by the resumed run.
        rows = [r for r in self.run.read_metrics() if r.get("step", 0) <= step]
        from genlab.files import atomic_write_text

        atomic_write_text(self.run.metrics, "".join(json.dumps(r) + "\n" for r in rows))

    # ---- the loop ----------------------------------------------------------------

    def _log(self, row: dict) -> None:
        if not self.world.is_main:
            return
        with open(self.run.metrics, "a") as f:
            f.write(json.dumps(row) + "\n")

    def _update_ema(self) -> None:
        # Warmup (as in diffusers' EMAModel): early on the average must forget the random init quickly.
        d = min(self.cfg.ema_decay, (1 + self.state.step) / (10 + self.state.step))
        with torch.no_grad():
            for k, v in weights_of(self.objective.modules).items():
                if v.dtype.is_floating_point:
                    self.ema[k].mul_(d).add_(v.float(), alpha=1 - d)
                else:
                    self.ema[k].copy_(v)

    def _eval(self, final: bool = False) -> dict:
        with self._whole_weights():
            if not self.world.is_main:
                return {}
            if self._last_eval[0] == self.state.step:  # a run stopped early ends where it was just evaluated
                results = self._last_eval[1]
            else:
                results = self._evaluate_and_log()
        if final or time.perf_counter() - self._plotted >= PLOT_EVERY_SECONDS:
            from genlab.plots import plot_losses

            plot_losses(self.run.read_metrics(), self.run.loss_plot)
            self._plotted = time.perf_counter()
        return results

    def _evaluate_and_log(self) -> dict:
        self.bundle.eval()
        try:
            with torch.no_grad():
                results = self.evaluate() if self.evaluate else {}
                if self.write_samples:
                    self.write_samples(self.state.step, self.sampling_weights())
        finally:
            self.bundle.train()
        self._consider(results)
        scope = {"val_batches": self.cfg.eval_batches} if results else {}
        self._log({"step": self.state.step, "elapsed": round(self.state.elapsed, 3), **results, **scope})
        if self.plain_progress and results:  # a log file or pipe gets one line per eval, not a bar
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in results.items())
            print(f"step {self.state.step} ({self.state.elapsed:.0f} s): {shown}", file=sys.stderr, flush=True)
        self._last_eval = (self.state.step, results)
        return results

    def _consider(self, results: dict) -> None:
        """Track the best eval (val loss, or a GAN's FID); where the best is kept, its weights are written at once."""
        value, s = results.get(self.select_metric), self.state
        if value is None:
            return
        if s.best is None or value < s.best["value"]:
            s.best = {"step": s.step, "elapsed": round(s.elapsed, 3), "metric": self.select_metric, "value": value}
            s.evals_since_best = 0
            if self.cfg.keep == "best":
                save_tensors(self.run.weights, self.sampling_weights(), self._weights_metadata())
        else:
            s.evals_since_best += 1

    def _out_of_patience(self) -> bool:
        return self.cfg.patience is not None and self.state.evals_since_best >= self.cfg.patience

    def _final_eval(self) -> dict:
        """The kept weights (model.safetensors) scored on the whole val split: what `genlab eval` reports.
        Under a time budget it runs only where the time left holds four periodic evals; else it says so."""
        if self.evaluate is None or not (self.world.is_main or self.sharded):
            return {}
        left = self.cfg.max_time - self.state.elapsed if self.cfg.max_time else None
        if left is not None and distributed.agree(left < 4 * self._eval_seconds, self.world):
            note = (f"the --max-time budget leaves {max(left, 0):.0f} s: the kept weights were not scored on the whole "
                    f"val split (`genlab eval {self.run.path}` does it)")
            if self.world.is_main:
                self._log({"step": self.state.step, "final_skipped": note})
                print(note, file=sys.stderr, flush=True)
            return {"final_skipped": note}
        if self.sharded:
            distributed.barrier(self.world)  # every rank loads what rank 0 has just written
        self._load_weights(load_tensors(self.run.weights), self.run.weights)
        self.bundle.eval()
        with self._whole_weights(), torch.no_grad():
            if not self.world.is_main:
                return {}
            results = self.evaluate(full=True)
        kept = self.state.best["step"] if self.cfg.keep == "best" and self.state.best else self.state.step
        row = {"step": self.state.step, "elapsed": round(self.state.elapsed, 3), "kept_step": kept,
               **{f"final_{k}": v for k, v in results.items()}, "val_batches": "all"}
        self._log(row)
        return {**results, "kept_step": kept}

    def _run_step(self, autocast) -> dict[str, float]:
        """One optimizer step of every player (with gradient accumulation); returns the mean logs."""
        cfg, s = self.cfg, self.state
        if cfg.max_time and s.planned_steps is None:
            if self._plan_from is None:
                if s.step > self._fit_start:  # this process's first step is done: time from here
                    self._plan_from = (s.step, s.elapsed)
            elif s.step - self._plan_from[0] >= PLAN_AFTER_STEPS:
                s.planned_steps = plan_steps(cfg, s.step, s.elapsed, *self._plan_from)
                s.planned_for = cfg.max_time
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
            self._update_ema()
        return logs

    def fit(self) -> dict:
        cfg, s = self.cfg, self.state
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
        self._fit_start, self._plan_from = s.step, None  # where this process began, and where its timing begins
        last = {}
        window_items, window_start = 0, time.perf_counter()
        with stop_signals(enabled=not self.world.active) as stop:
            while s.step < cfg.max_steps and not self._out_of_time() and not self._out_of_patience():
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
                    self._log(last)
                    bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items()} | {f"{self.item_name}/s": f"{rate:,.0f}"})
                if s.step % cfg.eval_interval == 0 and s.step < cfg.max_steps:
                    began = time.perf_counter()
                    self._eval()
                    window_start = time.perf_counter()  # eval time is not training throughput
                    # ... but it is the run's time: a time budget bounds the whole run, evals and samples included
                    self._eval_seconds = distributed.from_main(window_start - began, self.world)
                    s.elapsed += self._eval_seconds
                    bar.update(min(self._eval_seconds, bar.total - bar.n) if by_time else 0)
                    if distributed.agree(self._out_of_patience(), self.world):  # rank 0 alone keeps score
                        if self.world.is_main:
                            metric = s.best["metric"].replace("_", " ")
                            self._log({"step": s.step, "stopped_early": f"no better {metric} in {cfg.patience} evals",
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
        return {**last, **results, "step": s.step, "elapsed": round(s.elapsed, 3)}

    def _stop(self, signum: int) -> None:
        """Checkpoint this exact step, then end the run with `Interrupted` (the CLI exits 128 + signum)."""
        self.save_checkpoint()
        self.save_weights()
        name = signal.Signals(signum).name
        raise Interrupted(f"{name} at step {self.state.step}: checkpoint saved in {self.run.checkpoint}; "
                          "run the same command again to resume", signum)

    def _out_of_time(self) -> bool:
        if not self.cfg.max_time:
            return False
        # One eval's time is kept back for the run's last eval. Ranks' clocks differ: rank 0 decides for all.
        return distributed.agree(self.state.elapsed + self._eval_seconds >= self.cfg.max_time, self.world)

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
        return self.ema if self.ema is not None else weights_of(self.objective.modules)

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
