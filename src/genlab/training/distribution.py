"""How a run's players train under torchrun: each replicated with torch's DDP engine, or sharded with its FSDP
engine (`train.shard = "fsdp"`); alone, nothing changes. The trainer asks this for the gradient
synchronisation of each micro-batch and, under FSDP, for the whole weights when rank 0 evaluates and saves."""

from __future__ import annotations

from contextlib import contextmanager

from genlab.training import distributed


class Distribution:
    def __init__(self, players: dict, shard: str, world, device):
        self.world = world
        self.sharded = world.active and shard == "fsdp"
        self.replicas = {}  # player -> its module under the DDP or FSDP engine (torchrun only)
        if world.active:
            engine = distributed.shard_fully if self.sharded else distributed.replicate
            self.replicas = {name: engine(m, device) for name, m in players.items()}

    def sync_gradients(self, last_micro_batch: bool) -> None:
        """All-reduce on the last micro-batch of a step only."""
        if self.replicas:
            distributed.set_gradient_sync(self.replicas.values(), last_micro_batch)

    def stepped(self, player: str) -> None:
        """`player` has stepped: its later forwards this step feed other players' losses only."""
        if self.replicas:
            distributed.set_gradient_sync([self.replicas[player]], False)

    def gathered(self, tensors: dict) -> dict:
        """Whole tensors from FSDP's shards (a collective: every rank calls it); as they are elsewhere."""
        return distributed.full_tensors(tensors) if self.sharded else tensors

    @contextmanager
    def whole_weights(self):
        """Under FSDP every rank keeps the full parameters until the block ends; elsewhere a no-op."""
        if not self.sharded:
            yield
            return
        with distributed.whole_weights(self.replicas.values()):
            yield
