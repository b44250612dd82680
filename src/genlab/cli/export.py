"""`genlab export RUN --format FORMAT --out DIR`: a run in a form other tools load."""

from __future__ import annotations

# Commands import the engines they run inside their bodies, on purpose: `genlab --help` and a bad flag answer
# at once, before torch (seconds) loads.

from pathlib import Path
from typing import Optional

import typer

from genlab.cli.root import app, threads_option, use_threads


@app.command(no_args_is_help=True)
def export(
    run: str = typer.Argument(..., help="The run folder to export."),
    format: str = typer.Option(..., "--format", help="hf: a transformers folder; onnx: ONNX (a KV cache for GPTs); int8: int8 weights, measured against fp32; web: a page that generates in the browser (GPT runs)."),
    backend: str = typer.Option("onnx", "--backend", help="int8: onnx (onnxruntime; dynamic for text, static calibrated for images) or torch (torch's dynamic quantization, text runs)."),
    out: Path = typer.Option(..., "--out", help="The folder to write (replaced only if it holds an earlier export)."),
    quiet: bool = typer.Option(False, "--quiet", help="Print nothing."),
    ort_web: Optional[Path] = typer.Option(None, "--ort-web", help="web: onnxruntime-web's dist/ folder (default: npm pack at export time)."),
    threads: str = threads_option(),
) -> None:
    """Export a run as a transformers folder, ONNX, int8 or a web page; each folder is checked against the run
    and loads with `genlab sample DIR` and `genlab serve DIR`."""
    use_threads(threads)
    from genlab.export import export as run_export

    run_export(run, format, out, progress=not quiet, ort_web=ort_web, backend=backend)
