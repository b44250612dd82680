"""A GPT run as ONNX with a key/value cache, an FNet with its mixing inputs, or an LSTM/GRU as one step
with its state: `--format onnx`.

    model.onnx: input_ids (B, T), position_ids (B, T), attention_mask (B, P+T), past_keys, past_values
                (n_layer, B, n_head, P, head_size)  ->  logits (B, T, V), present_keys, present_values
                (n_layer, B, n_head, P+T, head_size)

Batch, new tokens T and past length P are dynamic. Each row has its own positions and its own mask over
the keys (1 = a real token), so rows at different positions can share one call. An LSTM/GRU file maps
input_ids (B, T), h [, c] (n_layer, B, H) to logits, next_h [, next_c]; an FNet file input_ids (B, T) and
past (n_layer, B, P, C) to logits and present (n_layer, B, P+T, C). `OnnxGPT`, `OnnxFNet` and `OnnxRNN` run the files
under onnxruntime behind the sequence-model protocol (init_state / step / forward), so genlab's step engine
decodes them exactly as it decodes the PyTorch models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from genlab.core.errors import GenlabError
from genlab.core.families import family, family_of
from genlab.core.generators import SamplingParams
from genlab.models.fnet import FNet
from genlab.models.gpt import GPT
from genlab.models.rnn import RNN
from genlab.sampling.engine import Engine, Request, decode

INPUTS = ["input_ids", "position_ids", "attention_mask", "past_keys", "past_values"]
OUTPUTS = ["logits", "present_keys", "present_values"]


class PastInputs:
    """The ONNX file's cache: the past keys and values come in as inputs (n_layer, B, nh, P, hs), each layer's new
    ones are appended to them, and the results go out as outputs. Query i of a row sees key j when the row's
    attention mask keeps j and j is not after it."""

    causal = False

    def __init__(self, past_keys, past_values, attention_mask, T: int):
        P = past_keys.shape[3]
        causal = torch.arange(P + T)[None, :] <= (P + torch.arange(T))[:, None]
        self.mask = causal[None, None] & attention_mask[:, None, None, :].bool()  # (B, 1, T, P+T)
        self.past, self.keys, self.values = (past_keys, past_values), [], []

    def remember(self, layer: int, k, v):
        k, v = torch.cat([self.past[0][layer], k], dim=2), torch.cat([self.past[1][layer], v], dim=2)
        self.keys.append(k)
        self.values.append(v)
        return k, v


class GPTWithPast(nn.Module):
    """genlab's GPT with the cache as explicit inputs and outputs (what the ONNX file computes): the model's own
    trunk, attending through `PastInputs`."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, position_ids, attention_mask, past_keys, past_values):
        cache = PastInputs(past_keys, past_values, attention_mask, input_ids.shape[1])
        logits = self.model.lm_head(self.model._trunk(input_ids, position_ids, cache))
        return logits, torch.stack(cache.keys), torch.stack(cache.values)


def empty_past(cfg, batch: int) -> torch.Tensor:
    return torch.zeros(cfg.n_layer, batch, cfg.n_head, 0, cfg.n_embd // cfg.n_head)


def _need_onnx() -> None:
    try:
        import onnx  # noqa: F401  (torch's exporter writes through it)
    except ImportError:
        raise GenlabError("--format onnx needs the `onnx` and `onnxruntime` packages (pip install 'genlab[export]')") from None


def export_gpt(model, path: Path) -> None:
    _need_onnx()
    c = model.cfg
    wrapper = GPTWithPast(model.cpu().eval())
    B, T, P = 2, 3, 2
    example = (torch.zeros(B, T, dtype=torch.long), torch.arange(P, P + T).repeat(B, 1), torch.ones(B, P + T, dtype=torch.long),
               torch.zeros(c.n_layer, B, c.n_head, P, c.n_embd // c.n_head), torch.zeros(c.n_layer, B, c.n_head, P, c.n_embd // c.n_head))
    dynamic = {"input_ids": {0: "batch", 1: "new"}, "position_ids": {0: "batch", 1: "new"}, "attention_mask": {0: "batch", 1: "total"},
               "past_keys": {1: "batch", 3: "past"}, "past_values": {1: "batch", 3: "past"}, "logits": {0: "batch", 1: "new"},
               "present_keys": {1: "batch", 3: "total"}, "present_values": {1: "batch", 3: "total"}}
    import warnings

    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice says nothing to a user
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, example, str(path), input_names=INPUTS, output_names=OUTPUTS, dynamic_axes=dynamic,
                          opset_version=17, dynamo=False)
    model.eval()  # the exporter can leave modules in training mode (dropout would then be on)


class OnnxGPT:
    """An exported GPT under onnxruntime, behind the sequence-model protocol the step engine decodes."""

    def __init__(self, path: Path, cfg, vocab_size: int):
        self.session = _session(path)
        self.cfg, self.vocab_size, self.max_context = cfg, vocab_size, cfg.block_size

    def eval(self):
        return self

    def _run(self, idx: torch.Tensor, start: int, past_k, past_v):
        B, T = idx.shape
        feeds = {"input_ids": idx.cpu().numpy().astype(np.int64),
                 "position_ids": np.tile(np.arange(start, start + T, dtype=np.int64), (B, 1)),
                 "attention_mask": np.ones((B, start + T), dtype=np.int64),
                 "past_keys": past_k, "past_values": past_v}
        logits, keys, values = self.session.run(OUTPUTS, feeds)
        return torch.from_numpy(logits), keys, values

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        past = empty_past(self.cfg, idx.size(0)).numpy()
        return self._run(idx, 0, past, past)[0]

    def init_state(self, batch_size: int) -> dict:
        past = empty_past(self.cfg, batch_size).numpy()
        return {"k": past, "v": past, "length": 0}

    def step(self, idx: torch.Tensor, state: dict):
        logits, state["k"], state["v"] = self._run(idx, state["length"], state["k"], state["v"])
        state["length"] += idx.size(1)
        return logits, state


class RNNStep(nn.Module):
    """An LSTM/GRU step with its state as explicit inputs and outputs (h, and c for an LSTM: (n_layer, B, H))."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, h, c=None):
        logits, state = self.model.step(input_ids, (h, c) if c is not None else h)
        return (logits, *state) if isinstance(state, tuple) else (logits, state)


def export_rnn(model, path: Path) -> None:
    _need_onnx()
    model = model.cpu().eval()
    with torch.no_grad():  # the state one step leaves: (h, c) of an LSTM, h of the others
        _, state = model.step(torch.zeros(2, 1, dtype=torch.long), None)
    state = [torch.zeros_like(t) for t in (state if isinstance(state, tuple) else [state])]
    names = ["h", "c"][: len(state)]
    dynamic = {"input_ids": {0: "batch", 1: "new"}, "logits": {0: "batch", 1: "new"},
               **{n: {1: "batch"} for n in names}, **{f"next_{n}": {1: "batch"} for n in names}}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(RNNStep(model.cpu().eval()), (torch.zeros(2, 3, dtype=torch.long), *state), str(path),
                          input_names=["input_ids", *names], output_names=["logits", *(f"next_{n}" for n in names)],
                          dynamic_axes=dynamic, opset_version=17, dynamo=False)
    model.eval()  # the exporter can leave modules in training mode (dropout would then be on)


class PastMixingInputs:
    """The FNet file's cache: each layer's mixing inputs so far come in as an input (n_layer, B, P, C), the new
    ones are appended, and the results go out as `present`."""

    def __init__(self, past):
        self.past, self.present = past, []

    def remember(self, layer: int, x):
        held = torch.cat([self.past[layer], x], dim=1)
        self.present.append(held)
        return held


class FNetWithPast(nn.Module):
    """genlab's FNet with its mixing inputs as explicit inputs and outputs: input_ids (B, T), past (n_layer, B, P, C)
    -> logits (B, T, V), present (n_layer, B, P+T, C); the model's own trunk over `PastMixingInputs`."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, past):
        cache = PastMixingInputs(past)
        return self.model.lm_head(self.model._trunk(input_ids, cache)), torch.stack(cache.present)


def export_fnet(model, path: Path) -> None:
    _need_onnx()
    c = model.cfg
    example = (torch.zeros(2, 3, dtype=torch.long), torch.zeros(c.n_layer, 2, 2, c.n_embd))
    dynamic = {"input_ids": {0: "batch", 1: "new"}, "past": {1: "batch", 2: "past"}, "logits": {0: "batch", 1: "new"},
               "present": {1: "batch", 2: "total"}}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(FNetWithPast(model.cpu().eval()), example, str(path), input_names=["input_ids", "past"],
                          output_names=["logits", "present"], dynamic_axes=dynamic, opset_version=17, dynamo=False)
    model.eval()


class OnnxFNet:
    """An exported FNet under onnxruntime, behind the sequence-model protocol (its past: the mixing inputs)."""

    def __init__(self, path: Path, cfg, vocab_size: int):
        self.session = _session(path)
        self.cfg, self.vocab_size, self.max_context = cfg, vocab_size, cfg.block_size

    def eval(self):
        return self

    def init_state(self, batch_size: int) -> dict:
        return {"past": np.zeros((self.cfg.n_layer, batch_size, 0, self.cfg.n_embd), dtype=np.float32)}

    def step(self, idx: torch.Tensor, state: dict):
        logits, state["past"] = self.session.run(None, {"input_ids": idx.cpu().numpy().astype(np.int64), "past": state["past"]})
        return torch.from_numpy(logits), state

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        return self.step(idx, self.init_state(idx.size(0)))[0]


def _session(path: Path):
    try:
        import onnxruntime as ort
    except ImportError:
        raise GenlabError(f"{path}: ONNX models need the `onnxruntime` package (pip install 'genlab[export]')") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxRNN:
    """An exported LSTM/GRU under onnxruntime, behind the sequence-model protocol (the state carries any length)."""

    max_context = None

    def __init__(self, path: Path, cfg, vocab_size: int):
        self.session, self.cfg, self.vocab_size = _session(path), cfg, vocab_size
        self.names = [i.name for i in self.session.get_inputs()][1:]  # h, and c for an LSTM

    def eval(self):
        return self

    def init_state(self, batch_size: int) -> dict:
        return {n: np.zeros((self.cfg.n_layer, batch_size, self.cfg.n_embd), dtype=np.float32) for n in self.names}

    def step(self, idx: torch.Tensor, state: dict):
        out = self.session.run(None, {"input_ids": idx.cpu().numpy().astype(np.int64), **state})
        return torch.from_numpy(out[0]), dict(zip(self.names, out[1:]))

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        return self.step(idx, self.init_state(idx.size(0)))[0]


# By the family spec's model class: (how to write the file, what runs it).
SEQUENCE_EXPORTS = {GPT: (export_gpt, OnnxGPT), FNet: (export_fnet, OnnxFNet), RNN: (export_rnn, OnnxRNN)}


def onnx_model(path: Path, cfg, vocab_size: int):
    """The exported file as a sequence model the step engine decodes."""
    return SEQUENCE_EXPORTS[family(cfg.name).model][1](path, cfg, vocab_size)


def export_onnx(generator, work: Path) -> dict:
    """Write `generator`'s run into `work` as model.onnx (+ its config and tokenizer); returns the parity checks."""
    import shutil

    config = generator.config
    if family_of(config).kind == "image":
        return export_image(generator, work)
    model = generator.model.cpu().eval()
    SEQUENCE_EXPORTS[family_of(config).model][0](model, work / "model.onnx")
    shutil.copyfile(generator.run.config, work / "config.toml")
    shutil.copyfile(generator.run.tokenizer, work / "tokenizer.json")
    onnx_model_ = onnx_model(work / "model.onnx", config.model, model.vocab_size)
    # Parity on the same inputs: a prompt, then one token on top of its cache.
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, model.vocab_size, (2, min(12, config.model.block_size - 1)), generator=g)
    nxt = torch.randint(0, model.vocab_size, (2, 1), generator=g)
    with torch.no_grad():
        state = model.init_state(2)
        ref_a, state = model.step(prompt, state)
        ref_b, _ = model.step(nxt, state)
    ours = onnx_model_.init_state(2)
    got_a, ours = onnx_model_.step(prompt, ours)
    got_b, _ = onnx_model_.step(nxt, ours)
    diff = max((got_a - ref_a).abs().max().item(), (got_b - ref_b).abs().max().item())
    # Greedy decoding through the step engine: the same tokens, past the context window too.
    request = lambda: [Request(prompt[0].tolist(), SamplingParams(max_new_tokens=config.model.block_size + 8, temperature=0.0), seed=0)]  # noqa: E731
    torch_engine, onnx_engine = Engine(model), Engine(onnx_model_)
    (a,) = decode(torch_engine, request())
    (b,) = decode(onnx_engine, request())
    greedy_equal = torch_engine.tokens(a) == onnx_engine.tokens(b)
    if diff > 1e-4 or not greedy_equal:
        raise GenlabError(f"--format onnx: the ONNX model differs from the run (max abs logit difference {diff:.2e}, "
                          f"greedy tokens {'equal' if greedy_equal else 'differ'}); not written")
    return {"max_abs_logit_difference": diff, "greedy_tokens_equal": greedy_equal,
            "bytes": (work / "model.onnx").stat().st_size}


# ---- images ---------------------------------------------------------------------------------------


class ImageDecode(nn.Module):
    """GAN/DCGAN generator or VAE decoder: z (B, latent_dim) [, y (B,)] -> images (B, C, H, W)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, z, y=None):
        return self.model.generate(z, y)


class ImageDenoise(nn.Module):
    """The diffusion U-Net: x_t (B, C, H, W), t (B,) [, y (B,), -1 = no class] -> prediction (B, C, H, W)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, t, y=None):
        return self.model(x, t, y)


def image_example(model, diffusion: bool) -> tuple[list[str], tuple]:
    B = 2
    names = ["x", "t"] if diffusion else ["z"]
    inputs = ((torch.randn(B, *model.shape), torch.tensor([3, 7])) if diffusion else (torch.randn(B, model.latent_dim),))
    if model.num_classes:
        names, inputs = names + ["y"], inputs + (torch.tensor([0, model.num_classes - 1]),)
    return names, inputs


class OnnxImageModel:
    """An exported image network under onnxruntime, with what genlab's ImageGenerator reads from a model."""

    def __init__(self, path: Path, diffusion: bool, shape, latent_dim: int, num_classes: int):
        self.session, self.diffusion = _session(path), diffusion
        self.shape, self.latent_dim, self.num_classes = tuple(shape), latent_dim, num_classes

    def eval(self):
        return self

    def _run(self, feeds: dict) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {k: v.cpu().numpy() for k, v in feeds.items()})[0])

    def generate(self, z, y=None):
        return self._run({"z": z, **({"y": y.long()} if self.num_classes else {})})

    def __call__(self, x, t, y=None):
        if self.num_classes and y is None:
            y = torch.full_like(t, -1)
        return self._run({"x": x, "t": t.long(), **({"y": y.long()} if self.num_classes else {})})


def export_image(generator, work: Path) -> dict:
    """An image run's sampling network as model.onnx (+ config.toml and the data's shape and classes); parity checked."""
    import json
    import shutil
    import warnings

    _need_onnx()
    config, model = generator.config, generator.model.cpu().eval()
    diffusion = family_of(config).sampler == "diffusion"
    names, inputs = image_example(model, diffusion)
    wrapper = ImageDenoise(model) if diffusion else ImageDecode(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, inputs, str(work / "model.onnx"), input_names=names, output_names=["images"],
                          dynamic_axes={**{n: {0: "batch"} for n in names}, "images": {0: "batch"}}, opset_version=17,
                          dynamo=False)
    model.eval()  # the exporter can leave modules in training mode (BatchNorm would then use batch statistics)
    shutil.copyfile(generator.run.config, work / "config.toml")
    (work / "images.json").write_text(json.dumps({"shape": list(generator.store.shape), "classes": generator.store.classes}))
    h, w, c = generator.store.shape
    onnx_model_ = OnnxImageModel(work / "model.onnx", diffusion, (c, h, w), getattr(model, "latent_dim", 0), model.num_classes)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        if diffusion:
            x, t = torch.randn(3, c, h, w, generator=g), torch.tensor([0, 10, 40])
            y = torch.tensor([0, -1, 1]) if model.num_classes else None
            diff = (onnx_model_(x, t, y) - model(x, t, y)).abs().max().item()
        else:
            z = torch.randn(3, model.latent_dim, generator=g)
            y = torch.tensor([0, 1, 0]) if model.num_classes else None
            diff = (onnx_model_.generate(z, y) - model.generate(z, y)).abs().max().item()
    if diff > 1e-4:
        raise GenlabError(f"--format onnx: the ONNX network differs from the run by {diff:.2e}; not written")
    return {"max_abs_difference": diff, "network": "U-Net denoiser" if diffusion else "generator/decoder",
            "bytes": (work / "model.onnx").stat().st_size}
