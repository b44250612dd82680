"""The Polars and pandas engines of `genlab data prepare`: the same files from the same input and options,
the same one-line errors, and augmentation that does not depend on how records are batched.

Every test makes its own data in tmp_path.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import polars as pl

from genlab.core.errors import GenlabError
from genlab.prep import columnar, prepare
from genlab.prep.augment import TextAugmenter
from genlab.prep.clean import TextCleaner
from genlab.prep.formats import WriterThread

TRICKY_HEADER = "id,text,label,count,score,flag,day,when,code\n"


def tricky_csv(path: Path, n: int = 400) -> Path:
    """Quotes, embedded newlines, pandas' missing markers, blank lines and rows without a value, Python-only
    whitespace (\\x1c), digits outside ASCII, inf and exponents, dates and times, HTML, punctuation of many
    scripts, repeated records and texts that differ only in case and punctuation."""
    rng = np.random.default_rng(3)
    words = ["good", "bad", "Fine!", "okay,", "«quoted»", "naïve", "ＡＢＣ", "日本語。", "<b>bold</b>", "&amp;",
             "don't", "x\u2014y", "tab\there", "line\nbreak", "  spaced  ", "emoji😀", "\x1cfs", "http://e.com/a"]
    lines = [TRICKY_HEADER]
    for i in range(n):
        text = " ".join(rng.choice(words, rng.integers(0, 8)))
        if i % 37 == 5:
            text = ""
        label = ["ham", "spam", "eggs", "NA", ""][int(rng.choice(5, p=[0.4, 0.3, 0.2, 0.05, 0.05]))]
        count = ["12", " 7 ", "-3", "", "+4", "1١", "N/A"][i % 7]
        score = ["1.5", "2e-3", "inf", "-Infinity", ".5", "7", "", "null"][i % 8]
        flag = ["true", "False", " TRUE ", ""][i % 4]
        day = f"2024-0{1 + i % 9}-{10 + i % 18}"
        when = f"2024-03-01 12:{i % 60:02d}" if i % 5 else "2024-03-02"
        code = ["A1", "B2", "C3"][i % 3]
        quoted = '"' + text.replace('"', '""') + '"'
        lines.append(f"{i},{quoted},{label},{count},{score},{flag},{day},{when},{code}\n")
        if i % 50 == 7:
            lines.append("\n")  # a blank line
            lines.append(",,,,,,,,\n")  # a row without a single value
        if i % 40 == 9:
            lines.append(lines[-1].replace(f"{i},", f"{i + 10_000},", 1))  # same text, other id
            lines.append(lines[-2])  # an exact duplicate
    path.write_text("".join(lines), encoding="utf-8")
    return path


OPTIONS = dict(
    text_col="text", label_col="label", dedupe=True, dedupe_text=True, dropna="text",
    clean="nfkc,strip-html,remove-urls,lowercase,strip-punct,collapse-space", split="70/15/15", stratify="label",
    seed=7, fill=["count=median", "score=mean", "flag=mode", "code=mode"], normalize="score", augment="eda",
    augment_factor=3, chunk_rows=64,
)


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name != "pipeline.json"}


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl", "hdf5"])
def test_both_engines_write_the_same_files(tmp_path, fmt):
    raw = tricky_csv(tmp_path / "raw.csv")
    synonyms = tmp_path / "syn.json"
    synonyms.write_text(json.dumps({"good": ["great", "fine"], "bad": ["poor"], "okay": ["ok"]}))
    records = {}
    for engine in ("polars", "pandas"):
        records[engine] = prepare(raw, tmp_path / engine, engine=engine, format=fmt, synonyms=synonyms,
                                  progress=False, **OPTIONS)
        assert records[engine]["steps"][0]["params"]["engine"] == engine  # the engine asked for really ran
    assert files_of(tmp_path / "polars") == files_of(tmp_path / "pandas")
    for record in records.values():
        record["steps"][0]["params"].pop("engine")
        record["steps"][-1]["files"].pop("pipeline.json", None)
    assert records["polars"] == records["pandas"]
    kinds = {c["name"]: c["kind"] for c in records["polars"]["columns"]}
    # The kinds a user expects (count: ints, Arabic-Indic digits too, made float by its median fill).
    assert kinds == {"id": "int", "text": "string", "label": "category", "count": "float", "score": "float",
                     "flag": "bool", "day": "date", "when": "datetime", "code": "category", "augmented": "bool"}
    removed = next(s for s in records["polars"]["steps"] if s["step"] == "dedupe")["removed"]
    assert removed["exact"] > 0 and removed["normalized_text"] > 0


@pytest.mark.parametrize("engine", ["polars", "pandas"])
def test_what_earlier_chunks_settled_is_not_scanned_again_and_changes_nothing(tmp_path, monkeypatch, engine):
    """A column found to be text stays text: later chunks skip its kind patterns. A category missing from
    whole chunks (JSONL keys come and go) is still a category."""
    records = []
    for i in range(600):
        record = {"id": i, "title": f"title {i}", "note": "x" if i else "first"}
        if i < 100 or i >= 500:
            record["kind"] = ["a", "b", "c"][i % 3]
        records.append(json.dumps(record))
    raw = tmp_path / "raw.jsonl"
    raw.write_text("\n".join(records) + "\n")
    scanned = []
    if engine == "polars":
        kind_of = columnar.typed_kind
        monkeypatch.setattr(columnar, "typed_kind", lambda present: scanned.append(present.name) or kind_of(present))
    record = prepare(raw, tmp_path / "out", engine=engine, split="100", chunk_rows=50, progress=False)
    kinds = {c["name"]: c["kind"] for c in record["columns"]}
    assert kinds == {"id": "int", "title": "string", "note": "category", "kind": "category"}
    if engine == "polars":
        assert 1 <= scanned.count("title") < 6  # 12 chunks: a few scanned before the first was joined
    other = prepare(raw, tmp_path / "other", engine="pandas" if engine == "polars" else "polars", split="100",
                    chunk_rows=50, progress=False)
    assert files_of(tmp_path / "out") == files_of(tmp_path / "other") and other["columns"] == record["columns"]


def test_the_input_is_parsed_once_and_without_room_it_is_read_again(tmp_path, monkeypatch):
    """The Polars engine's later passes read back the scan's cleaned chunks; on a disk without room for them,
    or one that fills up during the scan, they read the input again, and every case writes the same files
    and leaves no spill behind."""
    raw = tricky_csv(tmp_path / "raw.csv", n=1500)
    parsed = []
    parse = columnar.parse_csv
    monkeypatch.setattr(columnar, "parse_csv", lambda header, block: parsed.append(block) or parse(header, block))

    def run(name: str) -> int:
        parsed.clear()
        prepare(raw, tmp_path / name, engine="polars", progress=False, **OPTIONS)
        assert not list((tmp_path / name).glob("*.arrows"))
        return len(parsed)

    blocks = run("spilled")
    monkeypatch.setattr(columnar.SpillFile, "fits", staticmethod(lambda folder, size: False))
    assert run("no_room") == 3 * blocks  # scan, fit (OPTIONS fill and normalize) and write
    monkeypatch.undo()
    monkeypatch.setattr(columnar, "parse_csv", lambda header, block: parsed.append(block) or parse(header, block))
    spilled = []

    def disk_fills_up(frame, file):
        if len(spilled) == 3:
            raise OSError(28, "No space left on device")
        spilled.append(len(frame))
        return write(frame, file)

    write = pl.DataFrame.write_ipc_stream
    monkeypatch.setattr(pl.DataFrame, "write_ipc_stream", disk_fills_up)
    assert run("disk_full") == 3 * blocks
    assert files_of(tmp_path / "spilled") == files_of(tmp_path / "no_room") == files_of(tmp_path / "disk_full")


def test_a_writer_thread_raises_what_its_writer_raised_and_still_closes_it():
    class Failing:
        closed, seen = False, []

        def write(self, chunk):
            if chunk == 2:
                raise OSError(28, "No space left on device")
            self.seen.append(chunk)

        def close(self):
            self.closed = True

    writer = Failing()
    with pytest.raises(OSError, match="No space"):
        with WriterThread(writer, depth=1) as thread:
            for chunk in range(100):  # never waits forever on a queue nobody empties
                thread.write(chunk)
    assert writer.closed and writer.seen == [0, 1]


def tricky_jsonl(path: Path, n: int = 300, extra: str = "") -> Path:
    """Ints and floats mixed in one column (whole floats too), nulls and absent keys, NaN, booleans, ISO dates
    as text, an empty object and blank lines; `extra` is appended as it is."""
    rng = np.random.default_rng(4)
    lines = []
    for i in range(n):
        record = {"id": i, "text": " ".join(rng.choice(["Good", "bad!", "okay", "«x»", "tab\tit"], rng.integers(1, 6))),
                  "label": ["ham", "spam", None][i % 3], "amount": [1, 2.5, 3.0, None, -7][i % 5],
                  "ok": [True, False, None][i % 3], "day": f"2024-02-{1 + i % 28:02d}"}
        if i % 7 == 0:
            del record["amount"]
        lines.append(json.dumps(record))
        if i % 30 == 4:
            lines += ["", "{}", lines[-1]]
    lines.insert(5, '{"id": 5000, "text": "nan here", "label": "ham", "amount": NaN}')
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


JSON_OPTIONS = dict(text_col="text", label_col="label", dedupe=True, dropna="label", clean="lowercase,strip-punct",
                    split="70/15/15", stratify="label", seed=3, fill="amount=mean", normalize="amount",
                    augment="eda", chunk_rows=50)


@pytest.mark.parametrize("extra,engine", [
    ("", "polars"),
    ('{"id": 1, "text": "x", "label": "ham", "amount": 99999999999999999999}\n', "pandas"),  # too big for Arrow
    ('{"id": 1, "text": "x", "label": "ham", "ok": "yes"}\n', "pandas"),  # a bool column holding text
    ('{"id": 1, "text": "x", "label": "ham", "tags": [1, 2]}\n', "pandas"),  # a list
    ('{"id": 1, "text": 5, "label": "ham"}\n', "pandas"),  # a number where text goes
])
def test_both_engines_write_the_same_files_from_jsonl(tmp_path, extra, engine):
    raw = tricky_jsonl(tmp_path / "raw.jsonl", extra=extra)
    records = {}
    for name in ("polars", "pandas"):
        records[name] = prepare(raw, tmp_path / name, engine=name, progress=False, **JSON_OPTIONS)
    assert records["polars"]["steps"][0]["params"]["engine"] == engine  # Arrow reads it as Python would, or not
    assert files_of(tmp_path / "polars") == files_of(tmp_path / "pandas")
    assert records["polars"]["columns"] == records["pandas"]["columns"]
    kinds = {c["name"]: c["kind"] for c in records["polars"]["columns"]}
    assert kinds["amount"] == "float" and kinds["day"] == "date" and kinds["ok"] == ("bool" if not extra else
                                                                                    kinds["ok"])


def test_a_file_polars_reads_otherwise_runs_on_pandas(tmp_path):
    # A repeated column name: pandas renames the second (x.1); Polars would refuse. The result is pandas'.
    raw = tmp_path / "repeated.csv"
    raw.write_text("x,x,text\n1,2,hello\n3,4,world\n5,6,again\n")
    record = prepare(raw, tmp_path / "out", text_col="text", split="100", progress=False)
    assert record["steps"][0]["params"]["engine"] == "pandas"
    assert [c["name"] for c in record["columns"]] == ["x", "x.1", "text"]


def test_other_inputs_run_on_pandas_and_say_so(tmp_path):
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps([{"text": f"t{i}", "n": i} for i in range(20)]))
    record = prepare(raw, tmp_path / "out", text_col="text", progress=False)
    assert record["steps"][0]["params"]["engine"] == "pandas"


def test_an_unknown_engine_is_one_line(tmp_path):
    raw = tricky_csv(tmp_path / "raw.csv", n=5)
    with pytest.raises(GenlabError, match="--engine spark: choose from polars, pandas"):
        prepare(raw, tmp_path / "out", engine="spark", progress=False)


# ---- augmentation, vectorized ----

SYNONYMS = {"good": ["great", "fine"], "bad": ["poor"]}


def augment(op: str, texts: list[str], seed: int = 0, rate: float = 0.3) -> list[str]:
    augmenter = TextAugmenter((op,), rate, SYNONYMS, seed)
    return augmenter.augment(texts, np.arange(len(texts)), np.ones(len(texts), np.int64))


TEXTS = [f"w{i} good bad Good w{i + 1} x y z" for i in range(300)]


def is_subsequence(short: list[str], long: list[str]) -> bool:
    rest = iter(long)
    return all(word in rest for word in short)


def test_each_text_op_does_what_it_says():
    swapped, deleted = augment("swap", TEXTS), augment("delete", TEXTS)
    inserted, replaced = augment("insert", TEXTS), augment("synonym", TEXTS)
    for text, swap, delete, insert, synonym in zip(TEXTS, swapped, deleted, inserted, replaced):
        words = text.split()
        n = max(1, round(0.3 * len(words)))
        assert sorted(swap.split()) == sorted(words)
        assert 1 <= len(delete.split()) <= len(words) and is_subsequence(delete.split(), words)
        assert len(insert.split()) == len(words) + n and is_subsequence(words, insert.split())
        added = list(insert.split())
        for word in words:
            added.remove(word)
        assert all(w in words or any(w in SYNONYMS.get(o.lower(), []) for o in words) for w in added)
        changed = [(a, b) for a, b in zip(words, synonym.split()) if a != b]
        assert len(synonym.split()) == len(words) and 1 <= len(changed) <= n
        assert all(b in SYNONYMS[a.lower()] for a, b in changed)
    # Each op changes most texts, and not all alike.
    for out in (swapped, deleted, inserted, replaced):
        assert np.mean([a != b for a, b in zip(out, TEXTS)]) > 0.8 and len(set(out)) > 250


def test_a_copy_is_the_same_whatever_batch_it_is_made_in():
    augmenter = TextAugmenter(("swap", "delete", "insert", "synonym"), 0.2, SYNONYMS, seed=5)
    rows, copies = np.arange(100, 400), np.tile([1, 2, 3], 100)
    whole = augmenter.augment(TEXTS, rows, copies)
    pieces = [augmenter.augment(TEXTS[i : i + 7], rows[i : i + 7], copies[i : i + 7]) for i in range(0, 300, 7)]
    assert whole == [text for piece in pieces for text in piece]
    assert whole != TextAugmenter(("swap", "delete", "insert", "synonym"), 0.2, SYNONYMS, seed=6).augment(
        TEXTS, rows, copies)
    assert whole[0] != whole[1] or whole[1] != whole[2]  # copies of one record differ


def test_texts_cleaned_with_collapse_space_are_augmented_as_any_other():
    """Where collapse-space ran last the augmenter skips its own collapsing: the copies must not change."""
    cleaned = TextCleaner(["collapse-space"])
    texts = [cleaned(t) for t in TEXTS + ["  two\tgaps  here ", "\u3000ideographic\u3000space"]]
    rows, copies = np.arange(len(texts)), np.ones(len(texts), np.int64)
    ops = ("swap", "delete", "insert", "synonym")
    assert TextAugmenter(ops, 0.2, SYNONYMS, 5, collapsed=True).augment(texts, rows, copies) == \
        TextAugmenter(ops, 0.2, SYNONYMS, 5).augment(texts, rows, copies)


def test_texts_without_words_come_back_as_they_were():
    texts = [None, "", "   ", "\t\n", "one"]
    out = TextAugmenter(("swap", "delete", "insert"), 0.1, {}, 0).augment(texts, np.arange(5), np.ones(5, np.int64))
    assert out[:4] == texts[:4] and out[4] in ("one", "one one")


# ---- near duplicates (MinHash LSH) ----


def near_duplicate_csv(path: Path) -> Path:
    """200 sentences two words apart from each other (Jaccard about 0.65), then, far below them, 50 copies of
    the first 50 with their last word changed (about 0.87), and 50 sentences of other words."""
    base = [f"the quick brown fox number {i} jumps over the lazy dog near the river bank today" for i in range(200)]
    rows = base + [f"unrelated line {i} about cats and their many quiet habits indoors" for i in range(50)]
    rows += [text.replace("today", "tonight") for text in base[:50]]
    path.write_text("id,text\n" + "".join(f"{i},{text}\n" for i, text in enumerate(rows)))
    return path


@pytest.mark.parametrize("engine", ["polars", "pandas"])
def test_near_duplicates_go_and_merely_similar_texts_stay(tmp_path, engine):
    raw = near_duplicate_csv(tmp_path / "raw.csv")
    record = prepare(raw, tmp_path / "out", text_col="text", dedupe_near=0.8, split="100", engine=engine,
                     progress=False)
    step = next(s for s in record["steps"] if s["step"] == "dedupe")
    assert step["params"]["near"]["threshold"] == 0.8
    kept = set(pd.read_parquet(tmp_path / "out" / "train.parquet")["id"])
    assert len(set(range(250, 300)) & kept) <= 5  # the changed copies are near duplicates of earlier texts
    assert len(set(range(250)) - kept) <= 5  # the originals, 0.65 apart, and the unrelated lines stay
    assert step["removed"]["near"] == 300 - len(kept)


def test_near_duplicates_need_a_text_and_a_sensible_threshold(tmp_path):
    raw = near_duplicate_csv(tmp_path / "raw.csv")
    with pytest.raises(GenlabError, match="--dedupe-near 1.5: a Jaccard similarity in"):
        prepare(raw, tmp_path / "out", text_col="text", dedupe_near=1.5, progress=False)
    with pytest.raises(GenlabError, match="--dedupe-near needs --text-col"):
        prepare(raw, tmp_path / "out", dedupe_near=0.8, progress=False)
