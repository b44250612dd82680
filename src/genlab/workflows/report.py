"""A run (or the demo) as one static page to look at: `genlab report RUN` writes RUN/index.html.

The page links only files beside it (loss curve, sample grids, piano rolls, audio), by relative paths, and
loads nothing from the network: open it from disk, or serve the folder. Per run it shows what the run
is (task, family, size, steps, time), the figures that matter (the kept weights' score on the whole val
split, the best eval), the loss curve, and the samples of every eval in order — text as text, images as a
strip of grids, music as piano rolls with a player.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path

from genlab.core.config import load_config
from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write_text
from genlab.core.runs import RunDir

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 24px auto; padding: 0 16px; color: #222; }
h1 { margin-bottom: 4px; } h2 { margin-top: 40px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.meta { color: #666; }
table { border-collapse: collapse; margin: 8px 0; } td, th { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: left; }
pre { white-space: pre-wrap; background: #f7f7f7; border-radius: 6px; padding: 10px; font-size: 13px; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.strip { display: flex; gap: 10px; overflow-x: auto; padding-bottom: 8px; }
.strip figure { margin: 0; flex: none; } figcaption { color: #666; font-size: 12px; text-align: center; }
img.pixel { image-rendering: pixelated; }
"""


@dataclass
class Media:
    """A picture, a sound or a text shown on the page."""

    kind: str  # "image", "audio" or "text"
    caption: str
    path: Path | None = None  # image / audio
    text: str = ""  # text
    pixelated: bool = False  # small images scaled up without blurring


@dataclass
class Section:
    title: str
    lines: list[str] = field(default_factory=list)  # short facts, shown as a list
    pairs: list[tuple[Media, Media]] = field(default_factory=list)  # before | after
    media: list[Media] = field(default_factory=list)  # shown in order
    strip: list[Media] = field(default_factory=list)  # small images side by side (one per eval)
    table: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)  # the numbers a caller reports elsewhere (the demo's summary.json)


def _src(path: Path, page: Path) -> str:
    return html.escape(Path(os.path.relpath(path, page.parent)).as_posix())


def _media(m: Media, page: Path, width: int | None = None) -> str:
    caption = f"<figcaption>{html.escape(m.caption)}</figcaption>"
    if m.kind == "text":
        return f"<figure><pre>{html.escape(m.text)}</pre>{caption}</figure>"
    if m.kind == "audio":
        return f'<figure><audio controls preload="none" src="{_src(m.path, page)}"></audio>{caption}</figure>'
    size = f' width="{width}"' if width else ""
    cls = ' class="pixel"' if m.pixelated else ""
    return f'<figure><img src="{_src(m.path, page)}"{size}{cls} alt="{html.escape(m.caption)}">{caption}</figure>'


def _section(s: Section, page: Path) -> str:
    out = [f"<h2>{html.escape(s.title)}</h2>"]
    if s.lines:
        out.append("<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in s.lines) + "</ul>")
    if s.table:
        rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in s.table.items())
        out.append(f"<table>{rows}</table>")
    for before, after in s.pairs:
        out.append(f'<div class="pair">{_media(before, page, 480)}{_media(after, page, 480)}</div>')
    for m in s.media:
        out.append(_media(m, page, 720 if m.kind == "image" else None))
    if s.strip:
        out.append('<div class="strip">' + "".join(_media(m, page, 200) for m in s.strip) + "</div>")
    return "\n".join(out)


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write_page(dest: Path, title: str, subtitle: str, sections: list[Section]) -> Path:
    body = "\n".join(_section(s, dest) for s in sections)
    page = (f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n<h1>{html.escape(title)}</h1>\n"
            f'<p class="meta">{html.escape(subtitle)}</p>\n{body}\n</body>\n</html>\n')
    atomic_write_text(dest, page)
    return dest


# ---- a run -----------------------------------------------------------------------------------------


def run_section(run_path: Path, title: str | None = None, max_strip: int = 12) -> Section:
    """What a run folder holds, as one page section: facts, figures, loss curve, samples per eval."""
    run = RunDir(run_path).require()
    config = load_config(run.config)
    rows = run.read_metrics()
    final = next((r for r in reversed(rows) if "kept_step" in r), {})
    trained = max((r.get("step", 0) for r in rows), default=0)
    elapsed = max((r.get("elapsed", 0.0) for r in rows), default=0.0)
    section = Section(title or f"{run.path.name}: {config.task}, {config.model.name}")
    section.lines.append(f"{config.task} run, model {config.model.name}, data {config.data.source}; "
                         f"{trained} steps in {elapsed:.0f} s")
    if final:
        section.lines.append(f"kept weights: step {final['kept_step']} (train.keep = {config.train.keep}); "
                             "figures below: those weights on the whole val split")
    section.table = {k.removeprefix("final_"): v for k, v in final.items() if k.startswith("final_")}
    if (run.path / "README.md").is_file():
        section.lines.append(f"model card: {run.path / 'README.md'} (the Hugging Face Hub's format)")
    if run.loss_plot.is_file():
        section.media.append(Media("image", "loss curve (train and val)", run.loss_plot))
    grids = sorted(run.samples.glob("step_*.png")) if run.samples.is_dir() else []
    texts = sorted(run.samples.glob("step_*.txt")) if run.samples.is_dir() else []
    if grids:
        shown = grids if len(grids) <= max_strip else [grids[round(i * (len(grids) - 1) / (max_strip - 1))] for i in range(max_strip)]
        section.strip = [Media("image", f"step {int(p.stem.split('_')[1])}", p, pixelated=True) for p in shown]
    if texts:
        first, last = texts[0], texts[-1]
        section.pairs.append((Media("text", f"sample at step {int(first.stem.split('_')[1])}", text=first.read_text()[:1500]),
                              Media("text", f"sample at step {int(last.stem.split('_')[1])}", text=last.read_text()[:1500])))
    sounds = sorted(run.samples.glob("step_*.wav")) if run.samples.is_dir() else []
    for wav in sounds[:1] + sounds[-1:] if len(sounds) > 1 else sounds:  # an audio run: its first and last eval's sound
        section.media.append(Media("audio", f"sound at step {int(wav.stem.split('_')[1])}", wav))
    for midi in sorted(run.path.rglob("*.mid")):  # music written beside the run (the demo's continuation)
        if midi.with_suffix(".png").is_file():
            section.media.append(Media("image", f"{midi.name}: piano roll", midi.with_suffix(".png")))
        if midi.with_suffix(".wav").is_file():
            section.media.append(Media("audio", f"{midi.name}: audio", midi.with_suffix(".wav")))
    return section


def write_report(run_path: str | Path, out: str | Path | None = None) -> Path:
    """`genlab report RUN`: RUN/index.html (or `out`), one page for the run."""
    run_path = Path(run_path)
    if not (run_path / "config.toml").is_file():
        raise GenlabError(f"{run_path}: not a genlab run folder (no config.toml)")
    dest = Path(out) if out else run_path / "index.html"
    config_text = (run_path / "config.toml").read_text()
    section = run_section(run_path)
    section.media.append(Media("text", "config.toml", text=config_text))
    return write_page(dest, f"genlab run: {run_path.name}", str(run_path.resolve()), [section])
