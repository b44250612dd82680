"""Module weights by name: what a run's safetensors files hold, and loading them back with one line
of error when they do not fit."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from genlab.errors import GenlabError


def bundle_of(modules: dict[str, nn.Module]) -> nn.ModuleDict:
    return nn.ModuleDict(modules)


def weights_of(modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """Named tensors of all modules, keys `<module>.<param>`; tied weights stored once."""
    seen: dict[int, str] = {}
    out = {}
    for key, t in bundle_of(modules).state_dict().items():
        if t.data_ptr() in seen and t.numel() > 0:
            continue  # a tied weight (e.g. GPT's lm_head = wte): stored under its first name
        seen[t.data_ptr()] = key
        out[key] = t
    return out


def load_weights(modules: dict[str, nn.Module], tensors: dict[str, torch.Tensor], origin: Path) -> None:
    """Load tensors saved by `weights_of`; a mismatch is one line naming the file."""
    bundle = bundle_of(modules)
    try:
        missing, unexpected = bundle.load_state_dict(tensors, strict=False)
    except RuntimeError as e:  # shapes differ: torch lists every mismatch; the first names the tensor
        detail = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), "shapes differ")
        raise GenlabError(f"{origin}: weights do not fit this model ({detail[:200]}); is it from another config?") from None
    state = bundle.state_dict()
    # A missing key is fine only when it is tied to a loaded one (same storage).
    ptrs = {state[k].data_ptr() for k in tensors if k in state}
    missing = [k for k in missing if state[k].data_ptr() not in ptrs]
    if missing or unexpected:
        what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise GenlabError(f"{origin}: weights do not fit this model ({what}); is it from another model or config?")
