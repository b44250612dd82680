"""`--format int8`: a run with int8 weights, measured against its fp32 self before it is written.

    --backend onnx (default)  sequence runs: onnxruntime's dynamic quantization of the ONNX export (int8
                              weights for every matrix product, activations quantized per call);
                              image runs: static quantization of the generator / decoder / U-Net, with
                              activation ranges calibrated on inputs drawn from the run's data
    --backend torch           sequence runs: torch's dynamic quantization (export/torch_int8.py)

The report holds size, speed (tokens/s, or images/s) and quality (val loss, or FID on genlab's features)
of both, so the trade is judged on the user's own run.
"""

from __future__ import annotations

import logging
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from genlab.core.errors import GenlabError
from genlab.core.families import family_of
from genlab.core.generators import SamplingParams, UNFILTERED
from genlab.datasets.images import to_model_range
from genlab.datasets.token_store import TokenStore
from genlab.export.onnx import OnnxImageModel, export_image, export_onnx, image_example, onnx_model
from genlab.export.torch_int8 import WEIGHTS, export_torch_int8
from genlab.sampling.engine import Engine, Request, decode
from genlab.tasks.image import ImageGenerator
from genlab.tasks.sequence import evaluate_tokens

BACKENDS = ("onnx", "torch")
CALIBRATION_BATCHES = 8  # x 8 inputs: enough for stable activation ranges of small networks
FID_IMAGES = 256


@contextmanager
def quiet_quantizer():
    """onnxruntime's quantizer logs advice (pre-processing, bias layout) to the root logger: not the user's business."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def export_int8(generator, work: Path, backend: str = "onnx") -> dict:
    if backend not in BACKENDS:
        raise GenlabError(f"--backend: {backend!r} is not one of {', '.join(BACKENDS)}")
    if backend == "torch":
        fp32, int8 = export_torch_int8(generator, work)
        figures = {"fp32": _sequence_figures(generator, fp32), "int8": _sequence_figures(generator, int8)}
        figures["fp32"]["bytes"], figures["int8"]["bytes"] = generator.run.weights.stat().st_size, (work / WEIGHTS).stat().st_size
        return _report("torch dynamic int8 (Linear, LSTM, GRU weights)", figures)
    if family_of(generator.config).kind == "image":
        return _image_int8(generator, work)
    return _sequence_onnx_int8(generator, work)


def _report(backend: str, figures: dict) -> dict:
    fp32, int8 = figures["fp32"], figures["int8"]
    report = {"backend": backend, "bytes": int8["bytes"], "fp32_bytes": fp32["bytes"], "size_ratio": int8["bytes"] / fp32["bytes"]}
    for key, value in int8.items():
        if key != "bytes" and value is not None:
            report |= {key: value, f"fp32_{key}": fp32[key]}
    for key in ("val_loss", "fid_genlab_features"):
        if int8.get(key) is not None:
            report[f"{key}_change"] = int8[key] - fp32[key]
    return report


def _sequence_figures(generator, model) -> dict:
    """Val loss (8 batches of the run's val split) and decoding tokens/s at batch 1 of a sequence model."""
    config = generator.config
    val = TokenStore(generator.run.data).split("val")
    loss = None
    if len(val) > 1:
        loss = evaluate_tokens(model, val, generator.tokenizer.unit_lengths(), getattr(config.model, "block_size", 128),
                               "cpu", batch_size=16, max_batches=8)["loss"]
    start = time.perf_counter()
    engine = Engine(model)
    (slot,) = decode(engine, [Request(generator.encode_prompt(""), SamplingParams(max_new_tokens=64, **UNFILTERED), seed=0)])
    return {"val_loss": loss, "tokens_per_s_batch1": len(engine.tokens(slot)) / (time.perf_counter() - start)}


def _sequence_onnx_int8(generator, work: Path) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    export_onnx(generator, work)
    fp32 = work / "model.onnx"
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        int8 = Path(tmp) / "model.onnx"
        with quiet_quantizer():
            quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
        config, vocab = generator.config, generator.model.vocab_size
        figures = {name: _sequence_figures(generator, onnx_model(path, config.model, vocab)) for name, path in (("fp32", fp32), ("int8", int8))}
        figures["fp32"]["bytes"], figures["int8"]["bytes"] = fp32.stat().st_size, int8.stat().st_size
        int8.replace(fp32)  # the folder holds the int8 model under the name the loader reads
    return _report("onnxruntime dynamic int8 (MatMul weights)", figures)


def _calibration_inputs(generator, model, names: list[str]) -> list[dict]:
    """Inputs the network meets when sampling, drawn from the run: noisy training images at random steps
    for a U-Net, standard normal latents for a generator/decoder; classes drawn from the data's."""
    g = torch.Generator().manual_seed(0)
    images = np.asarray(generator.store.images)
    feeds = []
    for _ in range(CALIBRATION_BATCHES):
        n = 8
        if "x" in names:
            x0 = to_model_range(images[torch.randint(0, len(images), (n,), generator=g).numpy()], generator.pixel_range)
            t = torch.randint(0, generator.schedule.timesteps, (n,), generator=g)
            feed = {"x": generator.schedule.add_noise(x0, torch.randn(x0.shape, generator=g), t).numpy(), "t": t.numpy()}
        else:
            feed = {"z": torch.randn(n, model.latent_dim, generator=g).numpy()}
        if "y" in names:
            feed["y"] = torch.randint(0, model.num_classes, (n,), generator=g).numpy()
        feeds.append(feed)
    return feeds


def _image_int8(generator, work: Path) -> dict:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    export_image(generator, work)
    model = generator.model
    names, _ = image_example(model, generator.is_diffusion)
    feeds = iter(_calibration_inputs(generator, model, names))

    class Calibration(CalibrationDataReader):
        def get_next(self):
            return next(feeds, None)

    fp32 = work / "model.onnx"
    h, w, c = generator.store.shape
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        int8 = Path(tmp) / "model.onnx"
        with quiet_quantizer():
            quantize_static(str(fp32), str(int8), Calibration(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        figures = {}
        for name, path in (("fp32", fp32), ("int8", int8)):
            net = OnnxImageModel(path, generator.is_diffusion, (c, h, w), getattr(model, "latent_dim", 0), model.num_classes)
            onnx_gen = ImageGenerator.from_parts(generator.run, generator.config, generator.store, net, torch.device("cpu"))
            result = onnx_gen.evaluate(n=min(FID_IMAGES, len(generator.store.images)), seed=0, progress=False)
            figures[name] = {"fid_genlab_features": result["fid"], "images_per_s": result["sampling_images_per_s"],
                             "bytes": path.stat().st_size}
        int8.replace(fp32)
    return _report("onnxruntime static int8 (QDQ, per-channel weights, calibrated activations)", figures)
