"""Text cleaning: named presets and a custom regex, always applied in one fixed order.

Order (whatever order the flag lists them in):
    nfkc            Unicode NFKC: full-width letters, ligatures and the like to plain forms
    strip-html      drop <script>/<style> blocks, comments and tags; decode &amp; and friends
    remove-urls     http://, https://, ftp:// and www. addresses
    remove-emails   name@host.tld
    (custom regex)  --clean-regex PATTERN, replaced by --clean-replace (default: nothing)
    lowercase       str.lower()
    strip-punct     drop Unicode punctuation (categories P*: .,;:!?'"()[]{}-... ); symbols like $ stay
    collapse-space  runs of whitespace (newlines too) to one space; trim both ends

Removed spans (tags, URLs, emails) become a space, so that words either side
stay apart; add collapse-space to tidy up.

The Polars engine runs nfkc, lowercase, strip-punct and collapse-space as Polars
expressions (Rust, a column at a time); punctuation and whitespace there are
classes built from Python's own tables, so both engines drop the same characters.
The other steps run the Python functions below on each value in both engines.
"""

from __future__ import annotations

import functools
import html
import re
import sys
import unicodedata
from typing import Callable

import pandas as pd
import polars as pl

from genlab.core.errors import GenlabError

_HTML_BLOCK = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL)
_HTML_TAG = re.compile(r"</?[A-Za-z][^>]*>")
_URL = re.compile(r"\b(?:(?:https?|ftp)://|www\.)\S+", re.IGNORECASE)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")


@functools.cache
def _punctuation_table() -> dict[int, None]:
    # Built once (about 0.3 s): every code point whose Unicode category is punctuation.
    return {cp: None for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)).startswith("P")}


def rust_class(members) -> str:
    """A Rust regex class ([...] of ranges) holding exactly the code points in `members` (sorted ints)."""
    ranges, first, last = [], None, None
    for cp in members:
        if last is not None and cp == last + 1:
            last = cp
            continue
        if first is not None:
            ranges.append((first, last))
        first = last = cp
    if first is not None:
        ranges.append((first, last))
    return "[" + "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges) + "]"


@functools.cache
def punctuation_class() -> str:
    return rust_class(sorted(_punctuation_table()))


@functools.cache
def whitespace_chars() -> str:
    """Every character str.split() and str.strip() treat as whitespace."""
    return "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())


@functools.cache
def whitespace_class() -> str:
    return rust_class([ord(c) for c in whitespace_chars()])


@functools.cache
def _irregular_space() -> str:
    # Whitespace other than a lone space: the runs collapsing must rewrite (far faster than matching every space).
    return whitespace_class() + "{2,}|" + rust_class([ord(c) for c in whitespace_chars() if c != " "])


def collapse_space_polars(text: pl.Expr) -> pl.Expr:
    return text.str.replace_all(_irregular_space(), " ").str.strip_chars(" ")


def nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def strip_html(text: str) -> str:
    return html.unescape(_HTML_TAG.sub(" ", _HTML_BLOCK.sub(" ", text)))


def remove_urls(text: str) -> str:
    return _URL.sub(" ", text)


def remove_emails(text: str) -> str:
    return _EMAIL.sub(" ", text)


def lowercase(text: str) -> str:
    return text.lower()


def strip_punct(text: str) -> str:
    return text.translate(_punctuation_table())


def collapse_space(text: str) -> str:
    return " ".join(text.split())


PRESETS: dict[str, Callable[[str], str]] = {
    "nfkc": nfkc,
    "strip-html": strip_html,
    "remove-urls": remove_urls,
    "remove-emails": remove_emails,
    "lowercase": lowercase,
    "strip-punct": strip_punct,
    "collapse-space": collapse_space,
}
# The presets the Polars engine runs natively; the same results as the functions above.
POLARS_PRESETS: dict[str, Callable[[pl.Expr], pl.Expr]] = {
    "nfkc": lambda text: text.str.normalize("NFKC"),
    "lowercase": lambda text: text.str.to_lowercase(),
    "strip-punct": lambda text: text.str.replace_all(punctuation_class(), ""),
    "collapse-space": collapse_space_polars,
}
_REGEX_AFTER = "remove-emails"  # the custom regex runs after this preset, before lowercase


class TextCleaner:
    """The chosen presets plus an optional regex, as one function on a string."""

    def __init__(self, presets: list[str], regex: str | None = None, replacement: str = ""):
        unknown = [p for p in presets if p not in PRESETS]
        if unknown:
            raise GenlabError(f"--clean: unknown preset {unknown[0]!r} (choose from {', '.join(PRESETS)})")
        try:
            pattern = re.compile(regex) if regex else None
        except re.error as e:
            raise GenlabError(f"--clean-regex {regex!r}: not a valid regular expression ({e})") from None
        self.order: list[str] = []
        self.steps: list[Callable[[str], str]] = []
        for name, function in PRESETS.items():
            if name in presets:
                self.order.append(name)
                self.steps.append(function)
            if name == _REGEX_AFTER and pattern is not None:
                self.order.append("regex")
                self.steps.append(functools.partial(pattern.sub, replacement))

    def __bool__(self) -> bool:
        return bool(self.steps)

    def __call__(self, text: str) -> str:
        for step in self.steps:
            text = step(text)
        return text

    def clean_column(self, values: pd.Series) -> pd.Series:
        """Clean every string of a coerced text column; missing values stay missing."""
        cleaned = [v if v is None else self(v) for v in values.tolist()]
        return pd.Series(cleaned, index=values.index, dtype=object)

    def clean_polars(self, values: pl.Series) -> pl.Series:
        """The same as `clean_column`, on a Polars String series."""
        frame = values.to_frame()
        for name, step in zip(self.order, self.steps):
            native = POLARS_PRESETS.get(name)
            text = pl.col(values.name)
            frame = frame.select(native(text) if native else text.map_elements(step, return_dtype=pl.String))
        return frame.to_series()


def dedupe_key(text: str) -> str:
    """The form two texts share when they are near duplicates: NFKC, casefolded,
    punctuation dropped, whitespace collapsed ("Hello,  World!" == "hello world")."""
    return collapse_space(strip_punct(nfkc(text).casefold()))
