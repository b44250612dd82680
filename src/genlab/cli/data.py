"""`genlab data prepare|report`: flags in, genlab.prep out (docs/prep.md has the details)."""

from __future__ import annotations

# Commands import the engines they run inside their bodies, on purpose: `genlab --help` and a bad flag answer
# at once, before torch (seconds) loads.

import json
from pathlib import Path

import typer

from genlab.cli.root import app

data_app = typer.Typer(
    help="Turn a messy export (CSV, JSON, JSONL, Parquet, HDF5, a folder of text or images) "
    "into a clean, split, reproducible dataset, and report on it.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")


@data_app.command()
def prepare(
    source: Path = typer.Argument(..., help="Input file (.csv .json .jsonl .parquet .h5) or folder of text files or images."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (replaced only when complete)."),
    format: str = typer.Option("parquet", "--format", help="Output format: parquet, csv, jsonl, json or hdf5."),
    input_format: str = typer.Option(None, "--input-format", help="Input format when the extension or folder does not say: csv, json, jsonl, parquet, hdf5, textdir, images."),
    text_col: str = typer.Option(None, "--text-col", help="The text column: cleaned, deduplicated by normalized form, augmented, written to <split>.txt."),
    parse_dates: str = typer.Option(None, "--parse-dates", help="Comma-separated columns to read as dates and times whatever their spelling (ISO 8601 ones are found without it); written as real date/timestamp types."),
    label_col: str = typer.Option(None, "--label-col", help="The label column: checked, counted, reported per split."),
    dedupe: bool = typer.Option(False, "--dedupe", help="Drop exact duplicate records (first one stays)."),
    dedupe_text: bool = typer.Option(False, "--dedupe-text", help="Drop records whose text matches an earlier one after NFKC, casefold, no punctuation, collapsed spaces."),
    dedupe_near: float = typer.Option(None, "--dedupe-near", help="Drop records whose text is a near duplicate of an earlier one: MinHash LSH over 3-word shingles, Jaccard at least this (e.g. 0.8)."),
    dropna: str = typer.Option(None, "--dropna", help="Comma-separated columns: drop rows missing any of them (blank text counts as missing)."),
    fill: list[str] = typer.Option(None, "--fill", help="COLUMN=mean|median|mode|const:VALUE, fitted on train; repeat for more columns."),
    clean: str = typer.Option(None, "--clean", help="Comma-separated text presets: nfkc, strip-html, remove-urls, remove-emails, lowercase, strip-punct, collapse-space."),
    clean_regex: str = typer.Option(None, "--clean-regex", help="A Python regular expression to replace in the text (after remove-emails)."),
    clean_replace: str = typer.Option("", "--clean-replace", help="What --clean-regex matches become (default: nothing; \\1 refers to groups)."),
    labels: str = typer.Option(None, "--labels", help="Comma-separated allowed labels; any other is an error naming the row."),
    min_label_count: int = typer.Option(0, "--min-label-count", help="Fail when a label has fewer records than this (after dedupe)."),
    split: str = typer.Option("80/10/10", "--split", help="train/val/test percentages summing to 100, e.g. 70/15/15."),
    stratify: str = typer.Option(None, "--stratify", help="Keep this column's value shares equal across splits."),
    seed: int = typer.Option(0, "--seed", help="Seed for the split and augmentation."),
    normalize: str = typer.Option(None, "--normalize", help="Comma-separated numeric columns to normalize with train statistics."),
    norm_method: str = typer.Option("standard", "--norm-method", help="standard ((x-mean)/std) or minmax ((x-min)/(max-min))."),
    apply_stats: Path = typer.Option(None, "--apply-stats", help="Use the fills and normalization of an earlier normalization.json instead of fitting."),
    augment: str = typer.Option(None, "--augment", help="Train-split augmentation: eda or swap,delete,insert,synonym (text); flip,rotate,crop,jitter (images)."),
    augment_factor: int = typer.Option(2, "--augment-factor", help="Train records become this many times as many (originals included)."),
    augment_rate: float = typer.Option(0.1, "--augment-rate", help="Share of words each text op touches."),
    synonyms: Path = typer.Option(None, "--synonyms", help="Synonym table for EDA: JSON {word: [synonyms]} or lines 'word,syn1,syn2'."),
    chunk_rows: int = typer.Option(50_000, "--chunk-rows", help="Rows per chunk: memory use grows with it."),
    engine: str = typer.Option("polars", "--engine", help="polars (columnar, all cores; CSV and JSONL, other inputs run on pandas), pandas, or dask (a Dask cluster). All give the same files."),
    address: str = typer.Option(None, "--address", help="--engine dask: a running scheduler, e.g. tcp://10.0.0.5:8786 (default: a local cluster)."),
    workers: int = typer.Option(None, "--workers", help="--engine dask without --address: worker processes of the local cluster (default: one per core)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars (on a terminal)."),
) -> None:
    """Clean, deduplicate, split, normalize and augment SOURCE into --out."""
    from genlab.prep import prepare as run_prepare

    record = run_prepare(
        source, out, progress=progress, format=format, input_format=input_format, text_col=text_col,
        label_col=label_col, dedupe=dedupe, dedupe_text=dedupe_text, dedupe_near=dedupe_near, dropna=dropna, fill=fill, clean=clean,
        clean_regex=clean_regex, clean_replace=clean_replace, labels=labels, min_label_count=min_label_count,
        split=split, stratify=stratify, seed=seed, normalize=normalize, norm_method=norm_method,
        apply_stats=apply_stats, augment=augment, augment_factor=augment_factor, augment_rate=augment_rate,
        synonyms=synonyms, chunk_rows=chunk_rows, parse_dates=parse_dates, engine=engine,
        address=address, workers=workers,
    )
    counts = ", ".join(f"{name} {n}" for name, n in record["splits"].items())
    typer.echo(f"{out}: {counts} records ({record['input']['records']} read); see {out / 'pipeline.json'}")


@data_app.command()
def report(
    folder: Path = typer.Argument(..., help="A folder written by `genlab data prepare`."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of tables."),
    pos: bool = typer.Option(False, "--pos", help="Add the text column's part-of-speech profile (NLTK's tagger; its data must be installed)."),
) -> None:
    """Records per split, columns, missing values, duplicates, label balance, text lengths (and parts of speech).

    Also writes report.json and text_lengths.png into FOLDER.
    """
    from genlab.prep import format_report, report as run_report

    result = run_report(folder, pos=pos)
    typer.echo(json.dumps(result, indent=2, sort_keys=True) if as_json else format_report(result))
