"""What `prepare` is asked to do: the options of `genlab data prepare`, parsed and checked.

Options arrive as the CLI gives them (comma-separated text, "70/15/15") or as
Python values (lists, tuples); `Recipe.make` accepts either and checks what can
be checked before the input is opened.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from genlab.core.errors import GenlabError
from genlab.prep.clean import TextCleaner
from genlab.prep.formats import FORMATS
from genlab.prep.split import parse_ratios
from genlab.prep.stats import NORM_METHODS, Fill

OUTPUT_FORMATS = tuple(FORMATS)
ENGINES = ("polars", "pandas", "dask")


def names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """"a,b" or ["a", "b"] -> ("a", "b"); None or "" -> ()."""
    if value is None:
        return ()
    parts = value.split(",") if isinstance(value, str) else value
    return tuple(p.strip() for p in parts if p.strip())


class Recipe(BaseModel):
    """The options, parsed: build one with `Recipe.make`; defaults are the CLI's. A pydantic model like every
    other config of genlab; `make` parses the CLI's text forms and names the flag of a bad value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_format: str | None = None
    text_col: str | None = None
    label_col: str | None = None
    parse_dates: tuple[str, ...] = ()
    dedupe: bool = False
    dedupe_text: bool = False
    dedupe_near: float | None = None
    dropna: tuple[str, ...] = ()
    fill: tuple[Fill, ...] = ()
    clean: tuple[str, ...] = ()
    clean_regex: str | None = None
    clean_replace: str = ""
    labels: tuple[str, ...] | None = None
    min_label_count: int = 0
    split: tuple[float, float, float] = (80.0, 10.0, 10.0)
    stratify: str | None = None
    seed: int = 0
    normalize: tuple[str, ...] = ()
    norm_method: str = "standard"
    apply_stats: Path | None = None
    augment: tuple[str, ...] = ()
    augment_factor: int = 2
    augment_rate: float = 0.1
    synonyms: Path | None = None
    format: str = "parquet"
    chunk_rows: int = 50_000
    engine: str = "polars"
    address: str | None = None  # a running Dask scheduler (--engine dask); None: a local cluster
    workers: int | None = None  # workers of the local cluster (--engine dask without --address)

    @functools.cached_property
    def cleaner(self) -> TextCleaner:
        return TextCleaner(list(self.clean), self.clean_regex, self.clean_replace)

    @classmethod
    def make(
        cls,
        *,
        input_format: str | None = None,
        text_col: str | None = None,
        label_col: str | None = None,
        dedupe: bool = False,
        dedupe_text: bool = False,
        dedupe_near: float | None = None,
        dropna: str | Sequence[str] | None = None,
        fill: str | Sequence[str | Fill] | None = None,
        clean: str | Sequence[str] | None = None,
        clean_regex: str | None = None,
        clean_replace: str = "",
        labels: str | Sequence[str] | None = None,
        min_label_count: int = 0,
        split: str | Sequence[float] = "80/10/10",
        stratify: str | None = None,
        seed: int = 0,
        normalize: str | Sequence[str] | None = None,
        norm_method: str = "standard",
        apply_stats: str | Path | None = None,
        augment: str | Sequence[str] | None = None,
        augment_factor: int = 2,
        augment_rate: float = 0.1,
        synonyms: str | Path | None = None,
        format: str = "parquet",
        chunk_rows: int = 50_000,
        parse_dates: str | Sequence[str] | None = None,
        engine: str = "polars",
        address: str | None = None,
        workers: int | None = None,
    ) -> Recipe:
        """Parse and check the options (the CLI flags of the same names; see docs/prep.md)."""
        # Long because its signature lists every option of `genlab data prepare`; the checks are a few lines.
        if format not in OUTPUT_FORMATS:
            raise GenlabError(f"--format {format}: choose from {', '.join(OUTPUT_FORMATS)}")
        if norm_method not in NORM_METHODS:
            raise GenlabError(f"--norm-method {norm_method}: choose from {', '.join(NORM_METHODS)}")
        if engine not in ENGINES:
            raise GenlabError(f"--engine {engine}: choose from {', '.join(ENGINES)}")
        if (address or workers) and engine != "dask":
            raise GenlabError("--address and --workers are for --engine dask")
        if workers is not None and not 1 <= workers <= 4 * (os.cpu_count() or 1):
            raise GenlabError(f"--workers {workers}: from 1 to {4 * (os.cpu_count() or 1)} on this machine's "
                              f"{os.cpu_count()} cores (a bigger cluster: start one and pass --address)")
        if chunk_rows < 1:
            raise GenlabError(f"--chunk-rows {chunk_rows}: must be at least 1")
        if augment_factor < 1:
            raise GenlabError(f"--augment-factor {augment_factor}: must be at least 1 (1 = no copies)")
        if not 0 < augment_rate <= 1:
            raise GenlabError(f"--augment-rate {augment_rate}: must be in (0, 1]")
        if min_label_count < 0:
            raise GenlabError(f"--min-label-count {min_label_count}: must be at least 0")
        if text_col and text_col in names(parse_dates):
            raise GenlabError(f"--parse-dates {text_col}: the --text-col column holds text, not dates")
        if dedupe_text and not text_col:
            raise GenlabError("--dedupe-text needs --text-col")
        if dedupe_near is not None and not 0 < dedupe_near <= 1:
            raise GenlabError(f"--dedupe-near {dedupe_near}: a Jaccard similarity in (0, 1], e.g. 0.8")
        if dedupe_near is not None and not text_col:
            raise GenlabError("--dedupe-near needs --text-col")
        fill_specs = [fill] if isinstance(fill, str) else list(fill or ())
        fills = tuple(f if isinstance(f, Fill) else Fill.parse(f) for f in fill_specs)
        if apply_stats and (fills or names(normalize)):
            raise GenlabError("--apply-stats replaces --fill and --normalize; give one or the other")
        allowed = names(labels) or None
        if (allowed or min_label_count) and not label_col:
            raise GenlabError("--labels and --min-label-count need --label-col")
        recipe = cls(
            input_format=input_format, text_col=text_col, label_col=label_col, dedupe=dedupe,
            dedupe_text=dedupe_text, dedupe_near=dedupe_near, dropna=names(dropna), fill=fills, clean=names(clean),
            clean_regex=clean_regex or None, clean_replace=clean_replace, labels=allowed,
            min_label_count=min_label_count, split=parse_ratios(split), stratify=stratify, seed=seed,
            normalize=names(normalize), norm_method=norm_method,
            apply_stats=Path(apply_stats) if apply_stats else None, augment=names(augment),
            augment_factor=augment_factor, augment_rate=augment_rate,
            synonyms=Path(synonyms) if synonyms else None, format=format, chunk_rows=chunk_rows,
            parse_dates=names(parse_dates), engine=engine, address=address or None, workers=workers,
        )
        recipe.cleaner  # compiles --clean-regex and checks the presets before any input is read
        return recipe

    def columns_used(self) -> dict[str, str]:
        """Every column the options name -> the flag that names it (for 'no such column' errors)."""
        used = {}
        for flag, columns in [
            ("--text-col", [self.text_col]),
            ("--label-col", [self.label_col]),
            ("--stratify", [self.stratify]),
            ("--dropna", list(self.dropna)),
            ("--parse-dates", list(self.parse_dates)),
            ("--fill", [f.column for f in self.fill]),
            ("--normalize", list(self.normalize)),
        ]:
            for column in columns:
                if column:
                    used.setdefault(column, flag)
        return used
