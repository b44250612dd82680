"""Model cards: the README.md every run and every export carries, in the Hugging Face Hub's format (YAML
metadata first: library, tags, datasets, pipeline and this run's own figures as `model-index` results; then what
the model is, how it was trained, how to load and sample it, and what it cannot do)."""

from __future__ import annotations

from pathlib import Path

import yaml

from genlab.core.config import RunConfig
from genlab.core.families import family_of
from genlab.core.files import atomic_write_text

CARD = "README.md"
# The Hub's pipeline tag of each task (music and audio continue sequences of their own tokens).
PIPELINES = {"text": "text-generation", "code": "text-generation", "image": "unconditional-image-generation",
             "clip": "zero-shot-image-classification", "audio": "audio-to-audio", "music": "text-generation"}
# How each kind is sampled from the command line.
SAMPLING = {"image": "genlab sample {path} --n 16 --out grid.png",
            "clip": "genlab search {path} \"a seven\" --out hits.png",
            "music": "genlab sample {path} --seconds 30 --out piece.mid",
            "audio": "genlab sample {path} --seconds 2 --out sound.wav"}
METRIC_NAMES = {"val_loss": "validation loss (nats per token or per image)", "val_bits_per_char": "bits per character",
                "val_bits_per_byte": "bits per byte", "val_bits_per_dim": "bits per dimension",
                "fid_genlab_features": "FID on genlab's own features (not comparable with Inception FID)"}


def figures(results: dict) -> dict[str, float]:
    """The run's scores: the whole-split final ones where there are, else the last periodic eval's."""
    final = {k.removeprefix("final_"): v for k, v in results.items() if k.startswith("final_") and isinstance(v, (int, float))}
    periodic = {k: v for k, v in results.items() if k in METRIC_NAMES and isinstance(v, (int, float))}
    return {k: float(v) for k, v in (periodic | final).items() if k in METRIC_NAMES}


def dataset_name(source: str) -> str:
    """A named dataset as it is, a local path as its last part (a card never holds the user's folders)."""
    return Path(source).name if ("/" in source or "\\" in source) else source


def model_card(config: RunConfig, results: dict, name: str, parameters: int | None = None, export: dict | None = None) -> str:
    # Long because most of it is the card's one template, read top to bottom as the card reads.
    spec = family_of(config)
    data = dataset_name(config.data.source)
    scores = figures(results)
    pipeline = PIPELINES.get(config.task, "text-generation")
    meta = {
        "library_name": "genlab",
        "tags": ["genlab", config.task, spec.name, *([f"export-{export['format']}"] if export else [])],
        "datasets": [data],
        "pipeline_tag": pipeline,
        "model-index": [{"name": name, "results": [{
            "task": {"type": pipeline},
            "dataset": {"name": data, "type": data, "split": "validation"},
            "metrics": [{"type": k, "value": round(v, 5), "name": METRIC_NAMES[k]} for k, v in scores.items()],
        }]}],
    }
    t = config.train
    trained = (f"{results.get('step', 0)} steps ({results.get('elapsed', 0.0):.0f} s of training) at batch size "
               f"{t.batch_size}, peak learning rate {t.lr:g}, warmup {t.warmup_steps} steps then cosine decay, AdamW "
               f"(weight decay {t.weight_decay:g}), seed {t.seed}")
    size = f", {parameters:,} parameters" if parameters else ""
    shown = "\n".join(f"| {METRIC_NAMES[k]} | {v:.4f} |" for k, v in scores.items()) or "| (no held-out score) | |"
    sample = SAMPLING.get(config.task, 'genlab sample {path} --prompt "The" --max-new-tokens 200').format(path=name)
    origin = ""
    if export:
        measured = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in export.items()
                             if k not in ("run", "format", "task"))
        origin = (f"This folder is a `{export['format']}` export of the genlab run `{Path(export['run']).name}` "
                  f"(`genlab export`), checked against it ({measured}); it loads like the run itself.\n\n")
    body = f"""# {name}

{origin}A {spec.name} {config.task} model{size}, trained with genlab on `{data}`
(tokenizer: {config.tokenizer.kind if spec.kind in ('sequence', 'audio') else 'none'}).

## Training

{trained}. The resolved configuration is `config.toml` beside this card; the training curve is `loss.png`
and every logged number is in `metrics.jsonl` (in the run folder).

| held-out figure | value |
|---|---|
{shown}

## Use

```
pip install genlab
{sample}
genlab eval {name}
genlab serve {name}          # an OpenAI-compatible server
```

In Python: `import genlab; gen = genlab.load("{name}"); gen.generate(...)`.

## Limits

A small model trained briefly on one data set: it imitates the surface of `{data}` and knows nothing beyond
it. Its output is not checked for truth, safety or licensing; generated code runs only in genlab's sandbox
(`genlab eval-code`). Figures above are on the run's own held-out split.
"""
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n\n" + body


def write_card(folder: Path, config: RunConfig, results: dict, parameters: int | None = None, export: dict | None = None,
               name: str | None = None) -> Path:
    """FOLDER/README.md; `name` is what the card calls the model (default: the folder's name)."""
    dest = Path(folder) / CARD
    atomic_write_text(dest, model_card(config, results, name or Path(folder).name, parameters, export))
    return dest


def results_of(run) -> dict:
    """A finished run's last figures, from its metrics.jsonl (later rows win)."""
    return {k: v for row in run.read_metrics() for k, v in row.items()}


def read_card(path: Path) -> tuple[dict, str]:
    """(metadata, body) of a card."""
    text = Path(path).read_text()
    _, meta, body = text.split("---\n", 2)
    return yaml.safe_load(meta), body
