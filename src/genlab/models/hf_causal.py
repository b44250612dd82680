"""A Hugging Face causal LM loaded from a local folder (or the Hub), under genlab's sequence protocol: what
`genlab.load("hf:PATH")` (tasks/hf.py) samples from and what `genlab distill --teacher hf:PATH` learns from."""

from __future__ import annotations

import inspect
from pathlib import Path

import torch

from genlab.core.errors import GenlabError


def load_hf(name_or_path: str, device: torch.device):
    """(tokenizer, model) of a Hugging Face causal LM; a local folder is read offline, safetensors only."""
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise GenlabError(f"hf:{name_or_path}: Hugging Face models need the `transformers` package "
                          "(pip install 'genlab[hf]')") from None

    local = Path(name_or_path).expanduser()
    offline = local.is_dir()
    if not offline and (name_or_path.startswith((".", "/", "~")) or local.exists()):
        raise GenlabError(f"hf:{name_or_path}: no such model folder")
    source = str(local) if offline else name_or_path
    dtype = torch.float32 if device.type == "cpu" else "auto"  # half precision is slow or missing on CPU
    from transformers.utils import logging as hf_logging

    bars, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()  # its per-shard bars would land in the middle of sampled text
    hf_logging.set_verbosity_error()  # a config that does not fit the weights prints a table of every tensor
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=offline, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(source, local_files_only=offline, use_safetensors=True,
                                                     trust_remote_code=False, dtype=dtype)
    except Exception as e:  # noqa: BLE001 - a hostile config.json raises what it likes (RuntimeError, ZeroDivisionError, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "mismatched_sizes" in first:
            first = "config.json does not fit the weights: tensors of other shapes, or missing"
        raise GenlabError(f"hf:{name_or_path}: cannot load a causal LM with safetensors weights ({first})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    return tokenizer, model.to(device).eval()


class CausalLM(torch.nn.Module):
    """A Hugging Face causal LM under genlab's sequence protocol.

        forward(idx (B, T)) -> logits (B, T, V)
        init_state(B) -> {"past": None};  step(idx (B, T'), state) -> (logits (B, T', V), state)
    The state is the model's own KV cache.
    """

    def __init__(self, hf_model):
        super().__init__()
        self.hf = hf_model
        c = hf_model.config
        self.max_context = getattr(c, "max_position_embeddings", None) or getattr(c, "n_positions", None)
        # transformers 5 calls the KV cache `cache` (and warns at every step given `past_key_values`); 4 knows only
        # `past_key_values`.
        self.cache_name = "cache" if "cache" in inspect.signature(hf_model.forward).parameters else "past_key_values"

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=idx, use_cache=False).logits

    def init_state(self, batch_size: int) -> dict:
        return {"past": None}

    def step(self, idx: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        out = self.hf(input_ids=idx, use_cache=True, **{self.cache_name: state["past"]})
        state["past"] = getattr(out, self.cache_name)
        return out.logits, state
