"""`genlab export RUN --format FORMAT --out DIR`: a run in a form other tools load."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from genlab.cli.root import app, threads_option, use_threads


@app.command(no_args_is_help=True)
def export(
    run: str = typer.Argument(..., help="The run folder to export."),
    format: str = typer.Option(..., "--format", help="hf: a transformers folder; onnx: ONNX with a KV cache; int8: that ONNX quantized; web: a page that generates in the browser (GPT runs)."),
    out: Path = typer.Option(..., "--out", help="The folder to write (replaced only if it holds an earlier export)."),
    quiet: bool = typer.Option(False, "--quiet", help="Print nothing."),
    ort_web: Optional[Path] = typer.Option(None, "--ort-web", help="web: onnxruntime-web's dist/ folder (default: npm pack at export time)."),
    threads: str = threads_option(),
) -> None:
    """Export a run: a transformers folder that AutoModelForCausalLM and AutoTokenizer load (checked against the run)."""
    use_threads(threads)
    from genlab.export import export as run_export

    run_export(run, format, out, progress=not quiet, ort_web=ort_web)
