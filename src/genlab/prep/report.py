"""`report`: what a prepared dataset folder holds, as a table, as JSON, and as a PNG.

Read from the split files themselves (streamed, so a large dataset is fine)
and from pipeline.json (what was removed on the way): records per split,
columns and kinds, missing values per column and split, duplicates removed,
label balance per split, and text lengths in characters with a histogram
(`text_lengths.png`). `report.json` and the PNG are written into the folder.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from genlab.core.errors import GenlabError
from genlab.media.plots import new_figure, png_bytes
from genlab.prep.formats import FORMATS
from genlab.prep.schema import coerce, missing_mask, value_text
from genlab.prep.split import SPLITS
from genlab.core.files import atomic_write_bytes, atomic_write_json

HISTOGRAM = "text_lengths.png"
HISTOGRAM_BINS = 30
CHUNK_ROWS = 50_000  # rows read at a time: the report streams like prepare does


def read_pipeline(folder: Path) -> dict:
    path = folder / "pipeline.json"
    if not path.is_file():
        raise GenlabError(f"{folder}: not a prepared dataset (no pipeline.json)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise GenlabError(f"{path}: not valid JSON ({e})") from None


def _step(pipeline: dict, name: str) -> dict | None:
    return next((s for s in pipeline["steps"] if s["step"] == name), None)


def _summarize_split(path: Path, pipeline: dict) -> tuple[dict, Counter]:
    fmt = FORMATS[pipeline["format"]]
    schema = {c["name"]: c["kind"] for c in pipeline["columns"]}
    text_col, label_col = pipeline["text_col"], pipeline["label_col"]
    if not path.is_file():
        raise GenlabError(f"{path}: missing from the prepared dataset")
    records, missing, labels, lengths = 0, Counter(), Counter(), Counter()
    for chunk, _ in fmt.read(path, CHUNK_ROWS):
        chunk = coerce(chunk, schema, fmt.typed)
        records += len(chunk)
        for column in schema:
            missing[column] += int(missing_mask(chunk[column]).sum())
        if label_col:
            labels.update("<missing>" if v is None else value_text(v)
                          for v in chunk[label_col].to_numpy(dtype=object, na_value=None))
        if text_col:
            lengths.update(len(t) for t in chunk[text_col].tolist() if t is not None)
    summary = {"records": records, "missing": {c: missing[c] for c in schema}}
    if label_col:
        summary["labels"] = {label: {"records": n, "share": round(n / records, 4)} for label, n in sorted(labels.items())}
    if text_col and lengths:
        total = sum(lengths.values())
        summary["text_length"] = {"min": min(lengths), "mean": round(sum(k * v for k, v in lengths.items()) / total, 2),
                                  "max": max(lengths)}
    return summary, lengths


def _histogram(lengths: dict[str, Counter]) -> bytes:
    """A PNG of text lengths per split (step outlines over shared bins)."""
    longest = max(max(c) for c in lengths.values() if c)
    edges = np.linspace(0, longest + 1, HISTOGRAM_BINS + 1)
    figure, axes = new_figure(7, 4)
    for split, counts in lengths.items():
        if counts:
            axes.hist(list(counts), bins=edges, weights=list(counts.values()), histtype="step", label=split, linewidth=1.5)
    axes.set_xlabel("text length (characters)")
    axes.set_ylabel("records")
    axes.legend()
    return png_bytes(figure)


POS_TEXTS = 2000  # texts of the train split the part-of-speech profile reads


def default_tagger():
    """NLTK's averaged perceptron tagger, from its data where installed locally (nothing is downloaded)."""
    from nltk.tag.perceptron import PerceptronTagger

    try:
        return PerceptronTagger()
    except (LookupError, OSError):
        raise GenlabError("--pos: NLTK's tagger data is not installed here; install it once with "
                          "`python -m nltk.downloader averaged_perceptron_tagger_eng`") from None


def pos_profile(texts, tagger) -> dict[str, float]:
    """Share of each part-of-speech tag over the words of `texts` (Treebank words, as `tagger` tags them)."""
    from nltk.tokenize import TreebankWordTokenizer

    words = TreebankWordTokenizer()
    counts = Counter(tag for text in texts for _, tag in tagger.tag(words.tokenize(text)))
    total = sum(counts.values()) or 1
    return {tag: round(n / total, 4) for tag, n in counts.most_common()}


def _train_texts(folder: Path, pipeline: dict, limit: int) -> list[str]:
    fmt, texts = FORMATS[pipeline["format"]], []
    for chunk, _ in fmt.read(folder / f"train{fmt.extension}", CHUNK_ROWS):
        texts += [t for t in chunk[pipeline["text_col"]].tolist() if isinstance(t, str)]
        if len(texts) >= limit:
            break
    return texts[:limit]


def report(prepared: str | Path, pos: bool = False, tagger=None) -> dict:
    """Summarize the prepared dataset folder `prepared` (see the module docstring); with `pos`, add the
    part-of-speech profile of the text column's train split (`tagger`: any NLTK tagger; default: the
    perceptron tagger, when its data is installed).

    Returns the report as a dict and writes report.json (and text_lengths.png
    when there is a text column) into the folder.
    """
    folder = Path(prepared)
    pipeline = read_pipeline(folder)
    if pos and not pipeline["text_col"]:
        raise GenlabError(f"--pos: {folder} has no text column (prepare it with --text-col)")
    if pos and tagger is None:
        tagger = default_tagger()  # before any work: a missing tagger is a one-line error, not a late failure
    extension = FORMATS[pipeline["format"]].extension
    splits, lengths = {}, {}
    for split in SPLITS:
        splits[split], lengths[split] = _summarize_split(folder / f"{split}{extension}", pipeline)
    dedupe, dropna = _step(pipeline, "dedupe"), _step(pipeline, "dropna")
    result = {
        "input": pipeline["input"],
        "format": pipeline["format"],
        "columns": pipeline["columns"],
        "text_col": pipeline["text_col"],
        "label_col": pipeline["label_col"],
        "dropped_missing": dropna["rows_in"] - dropna["rows_out"] if dropna else 0,
        "duplicates_removed": {"exact": 0, "normalized_text": 0, "near": 0, **(dedupe["removed"] if dedupe else {})},
        "splits": splits,
        "histogram": None,
    }
    if any(lengths.values()):
        atomic_write_bytes(folder / HISTOGRAM, _histogram(lengths))
        result["histogram"] = HISTOGRAM
    if pos:
        result["pos"] = pos_profile(_train_texts(folder, pipeline, POS_TEXTS), tagger)
    atomic_write_json(folder / "report.json", result)
    return result


def _table(header: list[str], rows: list[list]) -> list[str]:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]


def format_report(result: dict) -> str:
    """The report as plain-text tables, for the terminal."""
    splits = result["splits"]
    lines = [f"input: {result['input']['path']} ({result['input']['format']}, {result['input']['records']} records)"]
    lines += [""] + _table(["split", "records"], [[s, splits[s]["records"]] for s in SPLITS])
    lines += [""] + _table(["column", "kind", "written as", *(f"missing:{s}" for s in SPLITS)],
                           [[c["name"], c["kind"], c.get("written_as", "-"), *(splits[s]["missing"][c["name"]] for s in SPLITS)]
                            for c in result["columns"]])
    removed = result["duplicates_removed"]
    lines += ["", f"dropped for missing values: {result['dropped_missing']}",
              f"duplicates removed: exact {removed['exact']}, normalized text {removed['normalized_text']}, "
              f"near {removed['near']}"]
    if result["label_col"]:
        labels = sorted({label for s in SPLITS for label in splits[s]["labels"]})
        rows = []
        for label in labels:
            cells = [splits[s]["labels"].get(label, {"records": 0, "share": 0.0}) for s in SPLITS]
            rows.append([label, *(f"{c['records']} ({c['share']:.1%})" for c in cells)])
        lines += ["", f"label balance ({result['label_col']}):"] + _table(["label", *SPLITS], rows)
    if result["histogram"]:
        rows = [[s, *(splits[s]["text_length"][k] for k in ("min", "mean", "max"))]
                for s in SPLITS if "text_length" in splits[s]]
        lines += ["", f"text length in characters ({result['text_col']}):"] + _table(["split", "min", "mean", "max"], rows)
        lines += [f"histogram: {result['histogram']}"]
    if result.get("pos"):
        rows = [[tag, f"{share:.1%}"] for tag, share in list(result["pos"].items())[:12]]
        lines += ["", f"parts of speech ({result['text_col']}, train split, the 12 most frequent):"] + _table(["tag", "share"], rows)
    return "\n".join(lines)
