"""Which weights a run keeps in model.safetensors, and when they are written: the weights samples are drawn
with (the EMA where `train.ema_decay` is set), either the last ones (`train.keep = "last"`) or those of the
best eval (`"best"`, written the moment an eval improves, so a served or killed run always has its best)."""

from __future__ import annotations

from contextlib import contextmanager

from genlab.core.runs import RunDir, save_tensors
from genlab.training.checkpointer import TrainState
from genlab.training.distribution import Distribution
from genlab.training.ema import EMA
from genlab.core.weights import weights_of


class WeightsKeeper:
    def __init__(self, run: RunDir, keep: str, modules: dict, ema: EMA | None, distribution: Distribution, world):
        self.run, self.keep, self.modules, self.ema = run, keep, modules, ema
        self.distribution, self.world = distribution, world
        self._whole = None  # under FSDP, while `whole()` holds the sampling weights gathered

    def sampling(self) -> dict:
        """The weights samples are drawn with: the EMA weights where EMA is on, else the live ones."""
        if self._whole is not None:
            return self._whole
        return self.ema.tensors if self.ema is not None else weights_of(self.modules)

    @contextmanager
    def whole(self):
        """Under FSDP every rank gathers the whole weights (and EMA), so that rank 0 alone can evaluate, sample
        and save while the others wait; elsewhere a no-op. Enter on every rank."""
        if not self.distribution.sharded:
            yield
            return
        # Gathered before the unshard: reading a state dict puts FSDP's parameters back into shards.
        self._whole = self.distribution.gathered(self.sampling())
        try:
            with self.distribution.whole_weights():
                yield
        finally:
            self._whole = None

    def improved(self, state: TrainState) -> None:
        """An eval was the best so far: where the best weights are kept, they are written at once."""
        if self.keep == "best":
            save_tensors(self.run.weights, self.sampling(), self.metadata(state))

    def save(self, state: TrainState) -> None:
        """model.safetensors: the sampling weights, unless the best ones are kept (written when they were seen)."""
        weights = self.distribution.gathered(self.sampling())
        if self.world.is_main and not (self.keep == "best" and state.best is not None):
            save_tensors(self.run.weights, weights, self.metadata(state))

    def metadata(self, state: TrainState) -> dict[str, str]:
        """What model.safetensors records of itself (a server shows it, and swaps the weights in when it changes)."""
        best = state.best if self.keep == "best" else None
        if best is not None:
            return {"step": str(best["step"]), "metric": best["metric"], "value": repr(best["value"])}
        return {"step": str(state.step)}

    def kept_step(self, state: TrainState) -> int:
        return state.best["step"] if self.keep == "best" and state.best else state.step
