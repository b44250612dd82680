"""Next-token prediction: the cross-entropy of every position's logits against the token after it."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def token_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """logits (B, T, V), targets (B, T) with -1 for padding -> per-token loss in nats (B*T,), 0 at padding."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1, reduction="none")


class LanguageModeling:
    """Mean next-token cross-entropy. With `carry_state` (recurrent models, batches from StreamWindows), each
    batch starts from the state the last one ended in, detached (truncated backprop through time); rows the
    batches flag as `reset` start from zeros. That state is part of the checkpoint (state_dict)."""

    def __init__(self, model: nn.Module, forward=None, carry_state: bool = False):
        self.model = model
        self.forward = forward or model  # a compiled forward where torch.compile is on
        self.modules = {"model": model}
        self.players = {"model": model}
        self.carry_state = carry_state
        self.state: dict[str, torch.Tensor] = {}  # the carried hidden state: "h" (and "c" for an LSTM)

    def losses(self, batch):
        if self.carry_state:
            x, y, reset = batch  # (B, T) inputs, (B, T) targets, (B,) rows that start from zeros
            logits = self._carried_forward(x, reset)
        else:
            x, y = batch  # (B, T) inputs and (B, T) targets
            logits = self.forward(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1), ignore_index=-1)
        yield "model", loss, {"loss": loss.item()}

    def _carried_forward(self, x: torch.Tensor, reset: torch.Tensor) -> torch.Tensor:
        state = None
        if self.state:
            keep = (~reset).to(self.state["h"].dtype)[None, :, None]  # (1, B, 1): zero the rows that restart
            parts = [self.state[k].to(x.device) * keep for k in ("h", "c") if k in self.state]
            state = tuple(parts) if len(parts) == 2 else parts[0]
        logits, state = self.model.step(x, state)
        parts = state if isinstance(state, tuple) else (state,)
        self.state = {k: p.detach() for k, p in zip(("h", "c"), parts)}
        return logits

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.cpu() for k, v in self.state.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.state = dict(state)
