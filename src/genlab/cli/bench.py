"""`genlab bench`: this machine's matmul peak, training tokens/s and MFU, and decoding against transformers."""

from __future__ import annotations

# Commands import the engines they run inside their bodies, on purpose: `genlab --help` and a bad flag answer
# at once, before torch (seconds) loads.

import json
from pathlib import Path
from typing import Optional

import typer

from genlab.cli.root import app, threads_option, use_threads


@app.command()
def bench(
    quick: bool = typer.Option(True, "--quick/--full", help="--quick takes about a minute on 2 cores; --full runs longer and adds batch 32."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the figures here as JSON."),
    threads: str = threads_option(),
) -> None:
    """Measure what this machine does: fp32 matmul peak, GPT training tokens/s and MFU, decoding tokens/s."""
    use_threads(threads)
    from genlab.workflows.benchmark import run
    from genlab.core.files import atomic_write_json
    from genlab.core.folders import check_output_file

    if out is not None:
        check_output_file(out, "text")
    r = run(quick)
    d = r["decode"]
    print(f"threads {r['threads']}, load average at start {r['load_avg_at_start']:.2f}"
          + ("  (busy: figures are pessimistic)" if r["load_avg_at_start"] > 1 else ""))
    print(f"fp32 matmul peak      {r['matmul_peak_gflops']:8.1f} GFLOP/s (1024x1024, taking turns with the training steps)")
    for name, t in r["train"].items():
        print(f"training {name}: {t['tokens_per_s']:,.0f} tokens/s, {t['gflops']:.1f} GFLOP/s, MFU {t['mfu']:.0%}")
    for b, rate in d["genlab_tokens_per_s"].items():
        theirs = (d["transformers_tokens_per_s"] or {}).get(b)
        versus = f"   transformers {theirs:,.0f} tokens/s ({rate / theirs:.2f}x)" if theirs else ""
        print(f"decoding batch {b:<3} genlab {rate:,.0f} tokens/s{versus}")
    if out is not None:
        atomic_write_json(out, json.loads(json.dumps(r, default=str)))
