"""Data parallelism across processes (torchrun): gloo on CPU, NCCL on GPU, multi-node included.

Every rank draws the same global batch from identically seeded samplers and
trains on its own slice of it; torch's DistributedDataParallel engine averages
the gradients (bucketed all-reduces overlapped with the backward pass), or,
with `train.shard = "fsdp"`, torch's FSDP engine keeps 1/N of every parameter,
gradient and optimizer slot on each rank and all-gathers a layer's weights
just before it runs. So N processes compute what one process would with the
same global batch, and rank 0 alone writes the run directory.
docs/distributed.md says how to launch it.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from genlab.core.errors import GenlabError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


def world() -> World:
    """This process's place among the ranks torchrun started (a world of one without torchrun)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def barrier(w: World) -> None:
    if w.active:
        dist.barrier()


def shard(batch: tuple[torch.Tensor, ...], w: World) -> tuple[torch.Tensor, ...]:
    """This rank's equal slice (dim 0) of a global batch."""
    if not w.active:
        return batch
    n = batch[0].shape[0]
    if n % w.size:
        raise ValueError(f"train.batch_size {n} must be divisible by the number of processes {w.size}")
    per = n // w.size
    return tuple(t[w.rank * per : (w.rank + 1) * per] for t in batch)


def replicate(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Put torch's DDP gradient engine on `module` in place: its parameters' gradients are averaged over the
    ranks during the backward pass of every forward made while gradient sync is on (`set_gradient_sync`).

    In place (the composable form of DDP), not a wrapper: objectives call their modules directly, and a
    GAN's objective calls two of them, so the module must stay the object they hold. The trainer turns a
    player's sync off once it has stepped, so a later forward that only feeds another player's loss (the
    GAN's frozen discriminator during the generator's step) asks for no all-reduce."""
    from torch.distributed._composable.replicate import replicate as ddp

    return ddp(module, device_ids=[device.index] if device.type == "cuda" else None)


def shard_fully(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`replicate`'s counterpart (the shards live on `module`'s device already).

    Put torch's FSDP engine (`fully_shard`) on `module` in place: each rank keeps a 1/N shard of every
    parameter (a DTensor), gathers a unit's full weights for its forward and backward and reduce-scatters its
    gradients. The units are the items of the model's layer lists (transformer blocks, stacked layers), so one
    block's weights are whole at a time, and the module itself for what is left (embeddings, heads)."""
    import warnings

    from torch.distributed.fsdp import fully_shard

    # FSDP warns of any output that is a view (a GAN critic's squeezed logits): only an in-place op on it would
    # lose a gradient hook, and no objective here changes a model's output in place.
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    units, inside = [], set()
    for sub in module.modules():
        if isinstance(sub, torch.nn.ModuleList) and id(sub) not in inside:
            units.extend(sub)
            inside.update(id(m) for unit in sub for m in unit.modules())
    for unit in units:
        fully_shard(unit)
    return fully_shard(module)


def sharded_units(modules) -> list:
    from torch.distributed.fsdp import FSDPModule

    return [sub for module in modules for sub in module.modules() if isinstance(sub, FSDPModule)]


@contextmanager
def whole_weights(modules):
    """Every rank gathers the full parameters of FSDP `modules` and keeps them whole until the block ends, so
    that rank 0 alone may run forwards (eval, samples) while the others wait. Enter on every rank."""
    units = sharded_units(modules)
    # Each root already keeps its parameters whole after a forward (FSDP's own choice for the root); the units
    # inside it must be told to, and told back afterwards.
    inner = [unit for unit in units if all(unit is not root for root in modules)]
    for unit in inner:
        unit.set_reshard_after_forward(False, recurse=False)
    for unit in units:
        unit.unshard()
    try:
        yield
    finally:
        for unit in inner:
            unit.set_reshard_after_forward(True, recurse=False)
        for root in modules:
            # Reshards, and forgets the order rank 0's forwards ran in: FSDP prefetches by the order the last
            # forwards ran, and ranks that prefetched apart would wait on each other forever.
            root.reset_iter_state()


def full_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Whole tensors from FSDP's shards (DTensors); others as they are. A collective: every rank calls it."""
    from torch.distributed.tensor import DTensor

    return {k: t.full_tensor() if isinstance(t, DTensor) else t for k, t in tensors.items()}


def shard_like(tensors: dict[str, torch.Tensor], like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Whole tensors cut into this rank's shards where the tensor of the same name in `like` is sharded."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    return {k: distribute_tensor(t.to(like[k].device), like[k].device_mesh, like[k].placements)
            if isinstance(like.get(k), DTensor) else t for k, t in tensors.items()}


def set_gradient_sync(modules, on: bool) -> None:
    """Gradient accumulation: micro-batches before the last run without all-reduce (DDP's no_sync)."""
    for module in modules:
        module.set_requires_gradient_sync(on)


def agree(flag: bool, w: World) -> bool:
    """Rank 0's decision, for all ranks (to stop, say): ranks that decided apart would wait on each other forever."""
    if not w.active:
        return flag
    t = torch.tensor([float(flag)])
    dist.broadcast(t, 0)
    return bool(t.item())


def from_main(value: float, w: World) -> float:
    """Rank 0's number, for all ranks (how long its eval took, say)."""
    if not w.active:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.broadcast(t, 0)
    return float(t.item())


def average_scalars(values: dict[str, float], w: World) -> dict[str, float]:
    if not w.active or not values:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64)
    dist.all_reduce(t)
    return dict(zip(values, (t / w.size).tolist()))


def pick_device(choice: str, local_rank: int = 0) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise GenlabError("train.device: cuda was asked for, but no CUDA GPU is available")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(f"cuda:{local_rank}") if choice == "cuda" else torch.device(choice)
