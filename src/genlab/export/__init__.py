"""`genlab export RUN --format FORMAT --out DIR`: a run in a form other tools load.

Formats: `hf` (a transformers folder: AutoModelForCausalLM / AutoTokenizer; export/hf.py). Each export is
built beside DIR and swapped in only when complete and checked against the run (genlab.folders), so a
failed or refused export never leaves a half-written folder; the folder says what it came from in
`genlab_export.json` and loads with `genlab sample DIR` like a run.
"""

from __future__ import annotations

import sys
from pathlib import Path

from genlab.errors import GenlabError

FORMATS = ("hf",)


def export(run: str | Path, format: str, out: str | Path, progress: bool = True) -> dict:
    """Export `run` as `format` into `out`; returns what the export measured (printed by the CLI)."""
    from genlab.api import load
    from genlab.files import atomic_write_json
    from genlab.folders import check_target, marker_kind, replacing

    if format not in FORMATS:
        raise GenlabError(f"--format: {format!r} is not one of {', '.join(FORMATS)}")
    out = Path(out)
    check_target(out, inputs=[str(run)])
    if out.is_dir() and any(out.iterdir()) and marker_kind(out) != "export":
        raise GenlabError(f"--out {out}: holds something other than an earlier export; choose a new folder")
    generator = load(run, device="cpu")
    if getattr(generator, "run", None) is None:
        raise GenlabError(f"{run}: export takes a genlab run folder")
    with replacing(out, "export") as work:
        from genlab.export.hf import export_hf

        report = export_hf(generator, work)
        report = {"format": format, "run": str(Path(run).resolve()), "task": generator.config.task, **report}
        atomic_write_json(work / "genlab_export.json", report)
    if progress:
        shown = ", ".join(f"{k} {v:.2e}" if isinstance(v, float) else f"{k} {v}" for k, v in report.items() if k not in ("run",))
        print(f"exported {run} -> {out} ({shown})", file=sys.stderr)
    return report
