"""`genlab export RUN --format FORMAT --out DIR`: a run in a form other tools load.

Formats: `hf` (a transformers folder: AutoModelForCausalLM / AutoTokenizer; export/hf.py) and `onnx` (the GPT
with a key/value cache, run by onnxruntime; export/onnx.py). Each export is
built beside DIR and swapped in only when complete and checked against the run (genlab.core.folders), so a
failed or refused export never leaves a half-written folder; the folder says what it came from in
`genlab_export.json` and loads with `genlab sample DIR` like a run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from genlab.core.cards import results_of, write_card
from genlab.core.config import load_config
from genlab.core.errors import GenlabError
from genlab.core.families import family_of
from genlab.core.files import atomic_write_json
from genlab.core.folders import check_target, marker_kind, replacing
from genlab.core.runs import RunDir, export_info, load_tensors
from genlab.export.hf import export_hf
from genlab.export.int8 import export_int8
from genlab.export.onnx import OnnxImageModel, export_onnx, onnx_model
from genlab.export.torch_int8 import WEIGHTS, load_int8_model
from genlab.export.web import export_web
from genlab.tasks import task_of
from genlab.tasks.sequence import build_model
from genlab.tokenizers import load_tokenizer

FORMATS = ("hf", "onnx", "int8", "web")


def export(run: str | Path, format: str, out: str | Path, progress: bool = True, ort_web: str | Path | None = None,
           backend: str = "onnx") -> dict:
    """Export `run` as `format` into `out` (`backend`: onnx or torch, for int8); returns what the export
    measured (printed by the CLI)."""
    if format not in FORMATS:
        raise GenlabError(f"--format: {format!r} is not one of {', '.join(FORMATS)}")
    if backend != "onnx" and format != "int8":
        raise GenlabError(f"--backend {backend}: only --format int8 has a choice of backend")
    out = Path(out)
    check_target(out, inputs=[str(run)])
    if out.is_dir() and any(out.iterdir()) and marker_kind(out) != "export":
        raise GenlabError(f"--out {out}: holds something other than an earlier export; choose a new folder")
    generator = _run_generator(run)
    spec = family_of(generator.config)
    flags = lambda name: "--format int8 --backend torch" if name == "int8-torch" else f"--format {name}"  # noqa: E731
    asked = "int8-torch" if format == "int8" and backend == "torch" else format
    if asked not in spec.exports:
        offered = ", ".join(map(flags, spec.exports)) or "no format yet"
        raise GenlabError(f"{flags(asked)}: a {spec.name} run does not export so (a {spec.name} run exports with: {offered})")
    with replacing(out, "export") as work:
        if format == "hf":
            report = export_hf(generator, work)
        elif format == "onnx":
            report = export_onnx(generator, work)
        elif format == "int8":
            report = export_int8(generator, work, backend)
        else:
            report = export_web(generator, work, Path(ort_web) if ort_web else None)
        report = {"format": format, "run": str(Path(run).resolve()), "task": generator.config.task, **report}
        atomic_write_json(work / "genlab_export.json", report)
        write_card(work, generator.config, results_of(generator.run), generator.parameter_count,
                   export={**report, "run": Path(run).name}, name=out.name)
    if progress:
        shown = ", ".join(f"{k} {v:.2e}" if isinstance(v, float) else f"{k} {v}" for k, v in report.items() if k not in ("run",))
        print(f"exported {run} -> {out} ({shown})", file=sys.stderr)
    return report


def _load_onnx_images(folder: Path, config):
    import json
    from types import SimpleNamespace

    info = json.loads((folder / "images.json").read_text())
    h, w, c = info["shape"]
    model = OnnxImageModel(folder / "model.onnx", family_of(config).sampler == "diffusion", (c, h, w),
                           getattr(config.model, "latent_dim", 0), len(info["classes"]) if config.data.image.use_labels else 0)
    store = SimpleNamespace(shape=tuple(info["shape"]), classes=info["classes"])  # what sampling reads of the data
    return task_of("image").Generator.from_parts(None, config, store, model, torch.device("cpu"))


def _run_generator(run: str | Path):
    """The PyTorch Generator of a genlab run folder (an export or an hf: model is not a run)."""
    if str(run).startswith("hf:") or exported_format(run):
        raise GenlabError(f"{run}: export takes a genlab run folder")
    rd = RunDir(run).require()
    return task_of(load_config(rd.config).task).Generator(rd.path, device="cpu")


def exported_format(folder: str | Path) -> str | None:
    """The format of a folder `genlab export` wrote (None for anything else)."""
    return export_info(folder).get("format")


def load_export(folder: str | Path):
    """The Generator of an onnx, int8 or web export: the run's generator class over onnxruntime (or, for
    `int8 --backend torch`, over the quantized PyTorch model) instead of the run's fp32 model."""
    folder = Path(folder)
    config = load_config(folder / "config.toml")
    if family_of(config).kind == "image":
        return _load_onnx_images(folder, config)
    tokenizer = load_tokenizer(folder / "tokenizer.json")
    if (folder / WEIGHTS).is_file():  # `int8 --backend torch` writes these weights instead of model.onnx
        model = load_int8_model(build_model(config, tokenizer.vocab_size), load_tensors(folder / WEIGHTS), folder / WEIGHTS)
    else:
        model = onnx_model(folder / "model.onnx", config.model, tokenizer.vocab_size)
    return task_of(config.task).Generator.from_parts(None, config, tokenizer, model, torch.device("cpu"))
