"""Module weights by name: what a run's safetensors files hold, and loading them back with one line
of error when they do not fit."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn as nn

from genlab.core.errors import GenlabError


def bundle_of(modules: dict[str, nn.Module]) -> nn.ModuleDict:
    return nn.ModuleDict(modules)


def weights_of(modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """Named tensors of all modules, keys `<module>.<param>`; tied weights stored once."""
    seen: dict[int, str] = {}
    out = {}
    for key, t in bundle_of(modules).state_dict().items():
        ptr = storage_key(t)
        if ptr in seen and t.numel() > 0:
            continue  # a tied weight (e.g. GPT's lm_head = wte): stored under its first name
        seen[ptr] = key
        out[key] = t
    return out


def storage_key(t: torch.Tensor) -> int:
    """Where `t`'s memory is, so that tied weights show as one. Under FSDP a parameter is a DTensor, and a
    rank's shard may be empty: its padded storage still tells parameters apart, the same way on every rank."""
    dtensor = sys.modules.get("torch.distributed.tensor")  # no DTensor can exist before it is imported
    if dtensor is not None and isinstance(t, dtensor.DTensor):
        return t.to_local().untyped_storage().data_ptr()
    return t.data_ptr()


def load_weights(modules: dict[str, nn.Module], tensors: dict[str, torch.Tensor], origin: Path) -> None:
    """Load tensors saved by `weights_of`; a mismatch is one line naming the file, and nothing is loaded then
    (torch copies every tensor that fits before it complains of one that does not: a server that reloads a
    replaced file would have served a mix of two models)."""
    bundle = bundle_of(modules)
    state = bundle.state_dict(keep_vars=True)
    for key, t in tensors.items():  # parameters: a buffer may be sized by what it holds (the n-gram's tables)
        if isinstance(state.get(key), nn.Parameter) and tuple(t.shape) != tuple(state[key].shape):
            raise GenlabError(f"{origin}: weights do not fit this model ({key} is {tuple(t.shape)} there, "
                              f"{tuple(state[key].shape)} here); is it from another config?")
    # A missing key is fine only when it is tied to a loaded one (same storage).
    ptrs = {storage_key(state[k]) for k in tensors if k in state}
    missing = [k for k in state if k not in tensors and storage_key(state[k]) not in ptrs]
    unexpected = [k for k in tensors if k not in state]
    if missing or unexpected:
        what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise GenlabError(f"{origin}: weights do not fit this model ({what}); is it from another model or config?")
    try:
        bundle.load_state_dict(tensors, strict=False)
    except RuntimeError as e:  # a buffer that cannot take what the file holds
        detail = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), "shapes differ")
        raise GenlabError(f"{origin}: weights do not fit this model ({detail[:200]}); is it from another config?") from None


def check_shapes(modules: dict[str, nn.Module], path: Path, config_path: Path) -> None:
    """The weights a config makes (built on the meta device: no memory) against those `path` holds, from its
    header alone: a config that does not fit its weights (edited, or another run's) is one line naming it,
    before the model asks for memory the config's shapes need (an n_embd of 10^6: terabytes)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            stored = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except Exception:  # noqa: BLE001 - a missing or unreadable file is load_tensors' to say
        return
    # Parameters only: a config fixes their shapes, while some buffers (an n-gram's counts) take the file's.
    for key, tensor in bundle_of(modules).named_parameters():
        if key in stored and tuple(tensor.shape) != stored[key]:
            raise GenlabError(f"{config_path}: makes {key} of shape {tuple(tensor.shape)}, but {path.name} holds "
                              f"{stored[key]}; is the config from another run?")
