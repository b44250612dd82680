"""What every batch sampler shares: an endless iterator drawing from its own seeded torch.Generator,
whose state is part of a checkpoint, so a resumed run sees exactly the batches of one never stopped."""

from __future__ import annotations

import torch


class SeededBatches:
    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self):
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])
