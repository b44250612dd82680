"""`--format int8 --backend torch`: a sequence run with int8 weights, run by PyTorch.

torch's dynamic quantization (`torch.ao.quantization.quantize_dynamic`, deprecated in favour of the
`torchao` package but present in torch 2.13) turns every Linear, LSTM and GRU into a module holding int8
weights with one scale per tensor; activations stay float and are quantized per call. Its modules keep
their weights in packed objects that safetensors cannot hold, so the folder stores what they are made of:

    model_int8.safetensors: NAME.int8 (int8), NAME.scale (float64), NAME.zero_point (int64) per quantized
                            weight; every other tensor (embeddings, norms, biases) as it was

and `load_int8_model` rebuilds the same quantized modules from them, bit for bit.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn as nn

from genlab.core.errors import GenlabError
from genlab.core.runs import save_tensors

QUANTIZED_TYPES = {nn.Linear, nn.LSTM, nn.GRU}
WEIGHTS = "model_int8.safetensors"


def quantize(model: nn.Module) -> nn.Module:
    """A copy of `model` whose Linear/LSTM/GRU layers hold int8 weights (torch's dynamic quantization)."""
    with warnings.catch_warnings():  # the deprecation notice points at torchao, which torch 2.13 does not ship
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, QUANTIZED_TYPES, dtype=torch.qint8)


def _is_rnn(module) -> bool:
    return isinstance(module, (torch.ao.nn.quantized.dynamic.LSTM, torch.ao.nn.quantized.dynamic.GRU))


def _quantized_weights(module) -> tuple[dict, dict] | None:
    """(weights, biases) of a dynamically quantized layer by parameter name, or None for any other module."""
    if _is_rnn(module):
        wb = module._weight_bias()  # {"weight": {name: qtensor}, "bias": {name: tensor}}
        return wb["weight"], wb["bias"]
    if not isinstance(module, torch.ao.nn.quantized.dynamic.Linear):
        return None
    weight, bias = module._weight_bias()
    return {"weight": weight}, ({"bias": bias} if bias is not None else {})


def int8_tensors(qmodel: nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor of a quantized model as plain tensors (module docstring)."""
    out: dict[str, torch.Tensor] = {}
    layers = []
    for prefix, module in qmodel.named_modules():
        found = _quantized_weights(module)
        if found is None:
            continue
        layers.append(prefix + ".")
        weights, biases = found
        for name, w in weights.items():
            if w.qscheme() not in (torch.per_tensor_affine, torch.per_tensor_symmetric):
                raise GenlabError(f"--backend torch: {prefix}.{name} is quantized per channel, which this format does not store")
            key = f"{prefix}.{name}"
            out[f"{key}.int8"] = w.int_repr().contiguous()
            out[f"{key}.scale"] = torch.tensor(w.q_scale(), dtype=torch.float64)
            out[f"{key}.zero_point"] = torch.tensor(w.q_zero_point(), dtype=torch.int64)
        for name, b in biases.items():
            out[f"{prefix}.{name}"] = b.detach().clone()
    for key, value in qmodel.state_dict().items():  # the float layers (embeddings, norms)
        if isinstance(value, torch.Tensor) and not key.startswith(tuple(layers)):
            out[key] = value.detach().clone()
    return out


def load_int8_model(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> nn.Module:
    """`model` (the run's family, freshly built) quantized, with the stored int8 weights put back exactly."""
    floats = {k: v for k, v in tensors.items() if not k.endswith((".int8", ".scale", ".zero_point"))}
    quantized = {k.removesuffix(".int8") for k in tensors if k.endswith(".int8")}
    try:
        missing, unexpected = model.load_state_dict(floats, strict=False)
        if unexpected or set(missing) - quantized:
            raise KeyError(f"missing {sorted(set(missing) - quantized)[:3]}, unexpected {unexpected[:3]}")
        qmodel = quantize(model.eval())
        for prefix, module in qmodel.named_modules():
            found = _quantized_weights(module)
            if found is None:
                continue
            weights, biases = found
            q = {}
            for name in weights:
                key = f"{prefix}.{name}"
                ints, scale, zero = tensors[f"{key}.int8"], tensors[f"{key}.scale"].item(), int(tensors[f"{key}.zero_point"])
                # Dequantize, then quantize with the same scale and zero point: exactly the stored integers.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    q[name] = torch.quantize_per_tensor((ints.float() - zero) * scale, scale, zero, torch.qint8)
            b = {name: tensors[f"{prefix}.{name}"] for name in biases}
            if _is_rnn(module):
                module.set_weight_bias(q | b)  # one flat dict: weight_ih_l0, bias_ih_l0, ...
            else:
                module.set_weight_bias(q["weight"], b.get("bias"))
    except (KeyError, RuntimeError) as e:
        raise GenlabError(f"{path}: does not fit this run's model ({str(e).splitlines()[0][:200]})") from None
    return qmodel.eval()


def export_torch_int8(generator, work: Path) -> tuple[nn.Module, nn.Module]:
    """Write `generator`'s run quantized into `work` (weights, config.toml, tokenizer.json); returns (fp32, int8) models."""
    import shutil

    model = generator.model.cpu().eval()
    qmodel = quantize(model)
    save_tensors(work / WEIGHTS, int8_tensors(qmodel))
    shutil.copyfile(generator.run.config, work / "config.toml")
    shutil.copyfile(generator.run.tokenizer, work / "tokenizer.json")
    return model, qmodel
