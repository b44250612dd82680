"""A run's checkpoint, written and read: weights, optimizer moments, RNG, the batch sampler's position, an
objective's carried state, the weight average and the loop's own state (runs.py lays out the folders and
commits them atomically). A run killed at any moment and resumed ends with exactly the weights of a run never
interrupted. Under FSDP every rank gathers its shards and rank 0 writes them whole; reading cuts them again."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from genlab.training import distributed
from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write_json, atomic_write_text
from genlab.core.runs import (RunDir, checkpoint_folder_for_writing, commit_checkpoint, load_tensors,
                         remove_stale_checkpoints, save_tensors)
from genlab.training.ema import EMA
from genlab.core.weights import bundle_of, load_weights, weights_of


@dataclass
class TrainState:
    step: int = 0
    items: int = 0  # tokens (or images) consumed
    elapsed: float = 0.0  # seconds of training so far, across resumes
    planned_steps: int | None = None  # the schedule's length under a time budget (None: max_steps)
    planned_for: float | None = None  # the time budget that plan was made for (a resume with another re-plans)
    best: dict | None = None  # step, elapsed and val_loss of the best eval so far
    evals_since_best: int = 0


class Checkpointer:
    def __init__(self, run: RunDir, world, device: torch.device, sharded: bool):
        self.run, self.world, self.device, self.sharded = run, world, device, sharded

    def restore_weights(self, modules: dict, tensors: dict, origin: Path) -> None:
        """Load whole tensors (a file's) into the modules; under FSDP each rank takes its shards of them."""
        if self.sharded:
            tensors = distributed.shard_like(tensors, bundle_of(modules).state_dict())
        load_weights(modules, tensors, origin)

    def save(self, objective, optimizers: dict, batches, ema: EMA | None, state: TrainState) -> None:
        weights, averaged = weights_of(objective.modules), ema.tensors if ema is not None else None
        moments = {name: opt.state_dict() for name, opt in optimizers.items()}
        if self.sharded:  # every rank joins in gathering the shards; rank 0 writes them whole
            weights, averaged = distributed.full_tensors(weights), averaged and distributed.full_tensors(averaged)
            for sd in moments.values():
                sd["state"] = {idx: distributed.full_tensors(slots) for idx, slots in sd["state"].items()}
        if not self.world.is_main:
            return
        tmp = checkpoint_folder_for_writing(self.run.checkpoint)
        save_tensors(tmp / "model.safetensors", weights)
        tensors, groups = {}, {}
        for name, sd in moments.items():
            groups[name] = sd["param_groups"]
            for idx, slots in sd["state"].items():
                for slot, t in slots.items():
                    tensors[f"optimizer/{name}/{idx}/{slot}"] = t
        tensors["rng/torch"] = torch.get_rng_state()
        if self.device.type == "cuda":
            tensors["rng/cuda"] = torch.cuda.get_rng_state(self.device)
        for key, t in batches.state_dict().items():
            tensors[f"batches/{key}"] = t
        for key, t in getattr(objective, "state_dict", dict)().items():  # e.g. a carried RNN state
            tensors[f"objective/{key}"] = t
        save_tensors(tmp / "state.safetensors", tensors)
        if averaged is not None:
            save_tensors(tmp / "ema.safetensors", averaged)
        s = state
        atomic_write_json(tmp / "state.json", {"step": s.step, "items": s.items, "elapsed": s.elapsed,
                                               "planned_steps": s.planned_steps, "planned_for": s.planned_for, "best": s.best,
                                               "evals_since_best": s.evals_since_best, "param_groups": groups})
        commit_checkpoint(tmp, self.run.checkpoint, s.step)

    def load(self, objective, optimizers: dict, batches, ema: EMA | None, max_time: float | None) -> TrainState:
        """Restore everything from the latest checkpoint; returns the loop's state (planned afresh when the run
        resumes with another time budget)."""
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
        self.restore_weights(objective.modules, load_tensors(folder / "model.safetensors"), folder / "model.safetensors")
        try:
            self._restore(meta, load_tensors(folder / "state.safetensors"), folder, objective, optimizers, batches, ema)
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            raise GenlabError(f"{folder}: checkpoint does not fit this run ({str(e).splitlines()[0][:200]}); "
                              "pass --overwrite to start afresh") from None
        planned_for = meta.get("planned_for", max_time)
        replan = planned_for != max_time  # resumed with another --max-time: plan the schedule afresh
        self._truncate_metrics(meta["step"])
        return TrainState(step=meta["step"], items=meta["items"], elapsed=meta["elapsed"],
                          planned_steps=None if replan else meta.get("planned_steps"),
                          planned_for=None if replan else planned_for, best=meta.get("best"),
                          evals_since_best=meta.get("evals_since_best", 0))

    def _restore(self, meta: dict, tensors: dict, folder: Path, objective, optimizers: dict, batches, ema: EMA | None) -> None:
        for name, opt in optimizers.items():
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
        batches.load_state_dict({k.removeprefix("batches/"): t for k, t in tensors.items() if k.startswith("batches/")})
        if hasattr(objective, "load_state_dict"):
            objective.load_state_dict({k.removeprefix("objective/"): t for k, t in tensors.items() if k.startswith("objective/")})
        if ema is not None:
            averaged = {k: v.to(self.device) for k, v in load_tensors(folder / "ema.safetensors").items()}
            ema.tensors = distributed.shard_like(averaged, ema.tensors) if self.sharded else averaged

    def _truncate_metrics(self, step: int) -> None:
        # Rows logged after the checkpoint will be logged again by the resumed run.
        rows = [r for r in self.run.read_metrics() if r.get("step", 0) <= step]
        atomic_write_text(self.run.metrics, "".join(json.dumps(r) + "\n" for r in rows))
