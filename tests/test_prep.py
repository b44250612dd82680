"""genlab.prep: the data preparation pipeline, through its Python API.

Every test makes its own small data in tmp_path.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from genlab.core.errors import GenlabError
from genlab.prep import pipeline, prepare, report
from genlab.prep.clean import TextCleaner
from genlab.prep.dedupe import first_occurrences
from genlab.prep.split import assign_splits, split_counts

LABELS = ["ham", "spam", "eggs"]
ISSUE_OPTIONS = dict(
    text_col="text", label_col="label", dedupe=True, dropna="text", clean="strip-punct,collapse-space",
    split="70/15/15", stratify="label", seed=42, normalize="feature1,feature2", augment="eda", format="parquet",
)


def write_csv(path: Path, n: int = 200, seed: int = 0) -> Path:
    """id, text, label (skewed), feature1 (int, some missing), feature2 (float); a few
    exact duplicates and empty texts."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = LABELS[int(rng.choice(3, p=[0.5, 0.3, 0.2]))]
        text = f"Record {i}: the {label} is {rng.choice(['good', 'bad', 'fine'])}!" if i % 25 != 3 else ""
        feature1 = "" if i % 10 == 0 else str(int(rng.integers(0, 100)))
        rows.append([i, text, label, feature1, f"{rng.normal(5, 2):.4f}"])
    rows += [rows[5], rows[6]]  # exact duplicates
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text", "label", "feature1", "feature2"])
        writer.writerows(rows)
    return path


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def table(folder: Path, split: str) -> pd.DataFrame:
    return pd.read_parquet(folder / f"{split}.parquet")


# ---- reproducibility ----


@pytest.mark.parametrize("fmt,ext", [("parquet", ".parquet"), ("hdf5", ".h5")])
def test_same_input_and_command_give_identical_bytes(tmp_path, fmt, ext):
    raw = write_csv(tmp_path / "raw.csv")
    options = {**ISSUE_OPTIONS, "format": fmt}
    prepare(raw, tmp_path / "a", progress=False, **options)
    prepare(raw, tmp_path / "b", progress=False, **options)
    a, b = files_of(tmp_path / "a"), files_of(tmp_path / "b")
    assert set(a) >= {f"train{ext}", f"val{ext}", f"test{ext}", "train.txt", "pipeline.json", "normalization.json"}
    assert a == b


@pytest.mark.parametrize("fmt", ["parquet", "hdf5", "csv", "jsonl", "json"])
def test_pipeline_json_holds_each_file_s_true_sha256(tmp_path, fmt):
    raw = write_csv(tmp_path / "raw.csv")
    record = prepare(raw, tmp_path / "out", progress=False, **{**ISSUE_OPTIONS, "format": fmt})
    files = record["steps"][-1]["files"]
    assert len(files) == 6
    for name, entry in files.items():
        assert entry["sha256"] == hashlib.sha256((tmp_path / "out" / name).read_bytes()).hexdigest(), name
    assert record["input"]["sha256"] == hashlib.sha256(raw.read_bytes()).hexdigest()


def test_chunk_size_does_not_change_which_records_go_where(tmp_path):
    raw = write_csv(tmp_path / "raw.csv")
    options = dict(text_col="text", label_col="label", dedupe=True, split="70/15/15", stratify="label",
                   augment="eda", format="jsonl", seed=3)
    prepare(raw, tmp_path / "big", chunk_rows=100_000, progress=False, **options)
    prepare(raw, tmp_path / "small", chunk_rows=7, progress=False, **options)
    for split in ("train", "val", "test"):
        assert (tmp_path / "big" / f"{split}.jsonl").read_bytes() == (tmp_path / "small" / f"{split}.jsonl").read_bytes()


def test_pipeline_json_records_every_step_in_order(tmp_path):
    raw = write_csv(tmp_path / "raw.csv")
    record = prepare(raw, tmp_path / "out", progress=False, **ISSUE_OPTIONS)
    saved = json.loads((tmp_path / "out" / "pipeline.json").read_text())
    assert saved == json.loads(json.dumps(record))
    steps = [s["step"] for s in saved["steps"]]
    assert steps == ["read", "clean", "dropna", "dedupe", "labels", "split", "normalize", "augment", "write"]
    by_name = {s["step"]: s for s in saved["steps"]}
    assert by_name["read"]["rows_out"] == 202
    assert by_name["dedupe"]["removed"]["exact"] == 2
    assert by_name["split"]["params"] == {"ratios": [70.0, 15.0, 15.0], "seed": 42, "stratify": "label"}
    for previous, step in zip(saved["steps"], saved["steps"][1:-2]):  # rows flow from step to step
        assert step["rows_in"] == previous["rows_out"]
    assert len(saved["input"]["sha256"]) == 64 and saved["genlab_version"]


# ---- split ----


def test_split_counts_are_exact_and_no_record_is_in_two_splits(tmp_path):
    raw = write_csv(tmp_path / "raw.csv", n=300)
    # Without dedupe the two duplicated rows are kept: they must still land in one split.
    prepare(raw, tmp_path / "out", split="70/15/15", seed=1, progress=False)
    splits = {s: table(tmp_path / "out", s) for s in ("train", "val", "test")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [212, 45, 45]  # 302 records
    ids = {s: set(df["id"]) for s, df in splits.items()}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    assert ids["train"] | ids["val"] | ids["test"] == set(range(300))


def sorted_assignment(keys: np.ndarray, strata: np.ndarray, ratios) -> np.ndarray:
    """The split rule written plainly: each stratum's records by key, cut at the counts, each cut moved up
    past records that share the key before it."""
    assignment = np.zeros(len(keys), np.uint8)
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        members = members[np.argsort(keys[members], kind="stable")]
        n_train, n_val, _ = split_counts(len(members), ratios)

        def cut(at: int) -> int:
            while 0 < at < len(members) and keys[members[at]] == keys[members[at - 1]]:
                at += 1
            return at

        first = cut(n_train)
        second = cut(max(first, n_train + n_val))
        assignment[members[first:second]] = 1
        assignment[members[second:]] = 2
    return assignment


@pytest.mark.parametrize("ratios", [(70, 15, 15), (100, 0, 0), (0, 50, 50), (90, 10, 0), (33.3, 33.3, 33.4)])
def test_the_split_is_the_plainly_written_rule(ratios):
    rng = np.random.default_rng(7)
    for distinct, strata_count in [(2**40, 1), (300, 4), (50, 7), (2**40, 200)]:
        n = 20_000
        keys = rng.integers(0, distinct, n).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        strata = rng.integers(0, strata_count, n).astype(np.int32)
        strata[strata == 2] = 1  # a stratum without records
        bits = int(strata.max()).bit_length()
        expected = sorted_assignment((keys >> np.uint64(bits)) | (strata.astype(np.uint64) << np.uint64(64 - bits))
                                     if bits else keys, strata, ratios)
        assert np.array_equal(assign_splits(keys.copy(), strata, ratios, block=4096), expected)


def test_records_sharing_a_key_share_a_split_however_the_sort_orders_them():
    rng = np.random.default_rng(5)
    keys = rng.integers(0, 400, 30_000).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)  # ~75 rows a key
    strata = rng.integers(0, 3, 30_000).astype(np.int32)
    assigned = assign_splits(keys.copy(), strata, (70, 15, 15))
    groups = pd.DataFrame({"key": keys, "stratum": strata, "split": assigned}).groupby(["key", "stratum"])["split"]
    assert (groups.nunique() == 1).all()
    assert 0.6 < (assigned == 0).mean() < 0.8 and (assigned == 1).any() and (assigned == 2).any()


def test_seed_changes_the_split(tmp_path):
    raw = write_csv(tmp_path / "raw.csv")
    prepare(raw, tmp_path / "a", seed=1, progress=False)
    prepare(raw, tmp_path / "b", seed=2, progress=False)
    assert set(table(tmp_path / "a", "test")["id"]) != set(table(tmp_path / "b", "test")["id"])


def test_stratified_split_keeps_label_shares(tmp_path):
    raw = write_csv(tmp_path / "raw.csv", n=400)
    prepare(raw, tmp_path / "out", label_col="label", stratify="label", split="60/20/20", dedupe=True, progress=False)
    everything = pd.concat([table(tmp_path / "out", s) for s in ("train", "val", "test")])
    totals = everything["label"].value_counts()
    for split, ratio in [("train", 0.6), ("val", 0.2), ("test", 0.2)]:
        counts = table(tmp_path / "out", split)["label"].value_counts()
        for label in LABELS:
            assert abs(counts[label] - totals[label] * ratio) <= 1


# ---- train statistics ----


def test_normalization_and_fill_are_fitted_on_train_only(tmp_path):
    raw = write_csv(tmp_path / "raw.csv", n=300)
    source = pd.read_csv(raw).drop_duplicates().set_index("id")
    prepare(raw, tmp_path / "out", normalize="feature1,feature2", fill=["feature1=median"], split="60/20/20",
            seed=5, progress=False)
    stats = json.loads((tmp_path / "out" / "normalization.json").read_text())
    train_ids = table(tmp_path / "out", "train")["id"]
    train = source.loc[train_ids]
    median = float(train["feature1"].median())
    assert stats["fill"]["feature1"] == {"strategy": "median", "value": median}
    filled = train["feature1"].fillna(median)
    # Fitted on the train values that are present, before filling.
    assert stats["normalize"]["columns"]["feature1"]["mean"] == pytest.approx(train["feature1"].mean())
    assert stats["normalize"]["columns"]["feature2"]["std"] == pytest.approx(train["feature2"].std(ddof=0))
    assert stats["normalize"]["columns"]["feature2"]["mean"] != pytest.approx(source["feature2"].mean(), abs=1e-9)
    # Val uses the train statistics, not its own.
    val = table(tmp_path / "out", "val").set_index("id")
    mean, std = (stats["normalize"]["columns"]["feature2"][k] for k in ("mean", "std"))
    expected = (source.loc[val.index, "feature2"] - mean) / std
    assert np.allclose(val["feature2"], expected)
    assert not val["feature1"].isna().any()
    f1 = stats["normalize"]["columns"]["feature1"]
    assert np.allclose(table(tmp_path / "out", "train").set_index("id")["feature1"], (filled - f1["mean"]) / f1["std"])


def test_later_data_reuses_saved_statistics(tmp_path):
    prepare(write_csv(tmp_path / "old.csv", seed=1), tmp_path / "old", normalize="feature2", norm_method="minmax",
            progress=False)
    stats = json.loads((tmp_path / "old" / "normalization.json").read_text())["normalize"]["columns"]["feature2"]
    new = write_csv(tmp_path / "new.csv", n=50, seed=2)
    record = prepare(new, tmp_path / "new", apply_stats=tmp_path / "old" / "normalization.json", split="100",
                     progress=False)
    expected = (pd.read_csv(new)["feature2"] - stats["min"]) / (stats["max"] - stats["min"])
    assert np.allclose(table(tmp_path / "new", "train")["feature2"], expected)
    assert json.loads((tmp_path / "new" / "normalization.json").read_text()) == json.loads(
        (tmp_path / "old" / "normalization.json").read_text())
    assert any(s["step"] == "normalize" and "apply_stats" in s["params"] for s in record["steps"])


# ---- cleaning, duplicates, missing values, labels ----


def test_cleaning_presets_apply_in_their_fixed_order():
    cleaner = TextCleaner(["collapse-space", "strip-punct", "lowercase", "remove-emails", "remove-urls",
                           "strip-html", "nfkc"])
    text = "<p>Ｈｅｌｌｏ,&amp; see https://x.org/a?b=1 or mail me@site.com!</p>\n\n  Bye."
    assert cleaner(text) == "hello see or mail bye"
    assert cleaner.order == ["nfkc", "strip-html", "remove-urls", "remove-emails", "lowercase", "strip-punct",
                             "collapse-space"]
    custom = TextCleaner(["collapse-space"], regex=r"\d+", replacement="<num>")
    assert custom("call 555 1234  now") == "call <num> <num> now"


def test_dedupe_exact_then_normalized_text(tmp_path):
    rows = [{"text": "Hello, World!", "n": 1}, {"text": "Hello, World!", "n": 1}, {"text": "hello   world", "n": 2},
            {"text": "HELLO WORLD.", "n": 3}, {"text": "other", "n": 4}]
    raw = tmp_path / "raw.jsonl"
    raw.write_text("".join(json.dumps(r) + "\n" for r in rows))
    record = prepare(raw, tmp_path / "out", text_col="text", dedupe=True, dedupe_text=True, split="100",
                     progress=False)
    step = next(s for s in record["steps"] if s["step"] == "dedupe")
    assert step["removed"] == {"exact": 1, "normalized_text": 2, "near": 0}
    assert table(tmp_path / "out", "train")["n"].tolist() == [1, 4]  # the first of each stays


def test_missing_values_drop_and_fill(tmp_path):
    raw = tmp_path / "raw.csv"
    raw.write_text("text,city,score\na,paris,1\n   ,rome,2\nc,,3\nd,paris,\ne,rome,5\nf,paris,6\n")
    prepare(raw, tmp_path / "out", text_col="text", dropna="text", split="100",
            fill=["city=mode", "score=const:0"], progress=False)
    out = table(tmp_path / "out", "train")
    assert out["text"].tolist() == ["a", "c", "d", "e", "f"]  # the blank text counted as missing
    assert out["city"].tolist() == ["paris", "paris", "paris", "rome", "paris"]
    assert out["score"].tolist() == [1, 3, 0, 5, 6] and str(out["score"].dtype) == "int64"


def test_label_counts_are_recorded_and_checked(tmp_path):
    raw = write_csv(tmp_path / "raw.csv")
    record = prepare(raw, tmp_path / "out", label_col="label", labels="ham,spam,eggs", dedupe=True, progress=False)
    counts = next(s for s in record["steps"] if s["step"] == "labels")["counts"]
    assert sum(counts.values()) == 200 and set(counts) == set(LABELS)
    with pytest.raises(GenlabError, match=r"label 'eggs': \d+ records, fewer than --min-label-count 1000"):
        prepare(raw, tmp_path / "bad", label_col="label", min_label_count=1000, progress=False)


# ---- augmentation ----


def test_augmentation_touches_train_only_with_the_multiplier(tmp_path):
    raw = write_csv(tmp_path / "raw.csv")
    synonyms = tmp_path / "syn.json"
    synonyms.write_text(json.dumps({"good": ["great", "fine"], "record": ["entry"]}))
    record = prepare(raw, tmp_path / "out", text_col="text", dropna="text", augment="eda", augment_factor=3,
                     synonyms=synonyms, split="70/15/15", progress=False)
    train, val = table(tmp_path / "out", "train"), table(tmp_path / "out", "val")
    originals = train[~train["augmented"]]
    assert len(train) == 3 * len(originals) and not val["augmented"].any()
    step = next(s for s in record["steps"] if s["step"] == "augment")
    assert step["params"]["ops"] == ["swap", "delete", "insert", "synonym"]
    assert step["added"] == 2 * len(originals)
    copies = train[train["augmented"]]
    assert (copies["text"].to_numpy() != np.repeat(originals["text"].to_numpy(), 2)).mean() > 0.8
    assert copies["text"].str.contains("entry|great").any()  # the synonym table is used
    assert set(copies["id"]) == set(originals["id"])  # copies keep their record's other columns


# ---- formats ----


@pytest.mark.parametrize("fmt,ext", [("csv", ".csv"), ("jsonl", ".jsonl"), ("json", ".json"), ("hdf5", ".h5"),
                                     ("parquet", ".parquet")])
def test_each_format_round_trips(tmp_path, fmt, ext):
    records = [{"text": "héllo, wörld", "n": 1, "x": 0.1, "flag": True, "tag": "a"},
               {"text": "line\nbreak", "n": None, "x": None, "flag": False, "tag": None},
               {"text": "", "n": -7, "x": 1e20, "flag": None, "tag": "007"}]
    raw = tmp_path / "raw.jsonl"
    raw.write_text("".join(json.dumps(r) + "\n" for r in records))
    prepare(raw, tmp_path / "out", split="100", format=fmt, progress=False)
    record = prepare(tmp_path / "out" / f"train{ext}", tmp_path / "back", split="100", format="jsonl",
                     progress=False)
    lines = (tmp_path / "back" / "train.jsonl").read_text().splitlines()
    expected = records if fmt != "csv" else [{**r, "text": r["text"] or None} for r in records]  # CSV: "" is missing
    assert [json.loads(line) for line in lines] == expected
    kinds = {c["name"]: c["kind"] for c in record["columns"]}
    assert kinds == {"text": "string", "n": "int", "x": "float", "flag": "bool", "tag": "string"}


def test_jsonl_keys_that_appear_late_and_kinds_that_widen_late(tmp_path):
    raw = tmp_path / "raw.jsonl"
    lines = [{"a": i, "b": "x"} for i in range(10)] + [{"a": 2.5, "b": "y", "late": True}]
    raw.write_text("".join(json.dumps(r) + "\n" for r in lines))
    record = prepare(raw, tmp_path / "out", split="100", chunk_rows=3, format="csv", progress=False)
    assert [(c["name"], c["kind"]) for c in record["columns"]] == [("a", "float"), ("b", "category"), ("late", "bool")]
    assert (tmp_path / "out" / "train.csv").read_text().splitlines()[:2] == ["a,b,late", "0.0,x,"]


def test_text_output_is_one_record_per_blank_line_separated_block(tmp_path):
    raw = tmp_path / "raw.jsonl"
    texts = ["first line\r\nsecond line\n\n\nthird", "   ", "plain", None, "last  "]
    raw.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    prepare(raw, tmp_path / "out", text_col="text", split="100", progress=False)
    assert (tmp_path / "out" / "train.txt").read_text() == "first line\nsecond line\nthird\n\nplain\n\nlast\n"


def test_folder_of_text_files_with_class_subfolders(tmp_path):
    for label in ("poems", "prose"):
        (tmp_path / "docs" / label).mkdir(parents=True)
        for i in range(5):
            (tmp_path / "docs" / label / f"{i}.txt").write_text(f"{label} {i}\nline two\n")
    (tmp_path / "docs" / ".hidden").mkdir()
    (tmp_path / "docs" / ".hidden" / "x.txt").write_text("skipped")
    record = prepare(tmp_path / "docs", tmp_path / "out", split="60/20/20", stratify="label", progress=False)
    assert record["text_col"] == "text" and record["label_col"] == "label" and record["input"]["records"] == 10
    train = table(tmp_path / "out", "train")
    blocks = (tmp_path / "out" / "train.txt").read_text().strip().split("\n\n")
    assert len(blocks) == len(train) == 6 and blocks[0] == train["text"][0].strip()


def make_images(root: Path, per_class: int = 6) -> None:
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(root / label / f"{i}.png")


def test_image_folder_becomes_class_folders_with_augmented_train(tmp_path):
    make_images(tmp_path / "imgs")
    (tmp_path / "imgs" / "cat" / "copy.png").write_bytes((tmp_path / "imgs" / "cat" / "0.png").read_bytes())
    record = prepare(tmp_path / "imgs", tmp_path / "out", dedupe=True, split="50/25/25", stratify="label",
                     augment="flip,rotate,crop,jitter", augment_factor=2, progress=False)
    assert next(s for s in record["steps"] if s["step"] == "dedupe")["removed"]["exact"] == 1
    train = table(tmp_path / "out", "train")
    assert len(train) == 2 * 6 and train["augmented"].sum() == 6
    for path, label in zip(train["path"], train["label"]):
        assert path.startswith(f"train/{label}/")
        with Image.open(tmp_path / "out" / path) as image:
            assert image.size == (10, 12) and image.format == "PNG"
    assert sorted(p.name for p in (tmp_path / "out" / "val").iterdir()) == ["cat", "dog"]
    prepare(tmp_path / "imgs", tmp_path / "again", dedupe=True, split="50/25/25", stratify="label",
            augment="flip,rotate,crop,jitter", augment_factor=2, progress=False)
    assert files_of(tmp_path / "out") == files_of(tmp_path / "again")  # augmented pixels included


# ---- bad input: one line naming the row or field, nothing left behind ----


def bad_inputs(tmp_path: Path) -> list[tuple[Path, dict, str]]:
    good = write_csv(tmp_path / "good.csv")
    fields = tmp_path / "fields.csv"
    fields.write_text("text,label\na,ham\nb,spam,extra\n")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "a"}\n{"text": "b"\n')
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("text\nok\ncaf\u00e9\n".encode("latin-1"))
    first_eggs = pd.read_csv(good)["label"].tolist().index("eggs") + 1
    empty, header_only, quote = tmp_path / "empty.csv", tmp_path / "header.csv", tmp_path / "quote.csv"
    empty.write_text("")
    header_only.write_text("text,label\n")
    quote.write_text('text,label\n"never closed,ham\nb,spam\n')
    deep = tmp_path / "deep.jsonl"  # json's parser recurses: this exhausted its stack (an internal error)
    deep.write_text('{"text": "a"}\n{"text": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(f"c{i}" for i in range(500)) + "\n" + ",".join("1" * 500) + "\n")
    too_wide = tmp_path / "too_wide.csv"  # 1.4 MB of 200,000 columns ran for hours
    too_wide.write_text(",".join(f"c{i}" for i in range(200_000)) + "\n" + ",".join("1" * 200_000) + "\n")
    too_wide_jsonl = tmp_path / "too_wide.jsonl"
    too_wide_jsonl.write_text(json.dumps({f"k{i}": i for i in range(20_000)}) + "\n")
    one_cell = tmp_path / "one_cell.csv"  # 162 MB of one cell took 3.8 GB; a few GB would take the machine's memory
    one_cell.write_text('text,label\n"' + "word " * 3_400_000 + '",a\nshort,b\n')
    pipe = tmp_path / "pipe.csv"  # opening it waited for a writer forever, deaf to SIGTERM
    os.mkfifo(pipe)
    return [
        (pipe, {}, "pipe.csv: not a regular file or folder"),
        (one_cell, {}, "one_cell.csv: column 'text' holds a value of 17,000,000 characters; data prepare takes values of at most 16,777,216"),
        (too_wide, {}, "too_wide.csv: 200,000 columns; data prepare takes at most 10,000"),
        (too_wide_jsonl, {}, "too_wide.jsonl: 20,000 columns; data prepare takes at most 10,000"),
        (Path("/dev/zero"), {"input_format": "csv"}, "/dev/zero: not a regular file or folder"),
        (deep, {}, "deep.jsonl: line 2: JSON nested too deeply"),
        (wide, {"text_col": "text"}, "columns: c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16, "
                                     "c17, c18, c19, ... (500 in all)"),
        (empty, {}, "empty.csv: empty file (no header row)"),
        (header_only, {}, "header.csv: no records"),
        (quote, {}, "quote.csv: not readable as CSV"),
        (fields, {}, "fields.csv: line 3: expected 2 fields, saw 3"),
        (broken, {}, "broken.jsonl: line 2: not valid JSON"),
        (latin1, {}, "latin1.csv: line 3: not UTF-8 text"),
        (good, {"text_col": "txt"}, "no column 'txt' (--text-col)"),
        (good, {"stratify": "lable"}, "no column 'lable' (--stratify)"),
        (good, {"split": "70/20/20"}, "--split 70/20/20: ratios sum to 110, not 100"),
        (good, {"label_col": "label", "labels": "ham,spam"}, f"good.csv: row {first_eggs}: label 'eggs' is not one of ham, spam"),
        (good, {"normalize": "text"}, "--normalize text: the column holds string values"),
    ]


@pytest.mark.parametrize("engine", ["polars", "pandas"])
def test_bad_input_is_one_line_naming_the_row_or_field_and_leaves_nothing(tmp_path, engine):
    out = tmp_path / "out"
    for source, options, message in bad_inputs(tmp_path):
        with pytest.raises(GenlabError) as error:
            prepare(source, out, progress=False, engine=engine, **options)
        assert message in str(error.value) and "\n" not in str(error.value)
        assert not out.exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_an_error_leaves_an_earlier_prepared_dataset_untouched(tmp_path):
    raw = write_csv(tmp_path / "raw.csv")
    prepare(raw, tmp_path / "out", text_col="text", progress=False)
    before = files_of(tmp_path / "out")
    with pytest.raises(GenlabError, match=r"row \d+: label '\w+' is not one of ham"):
        prepare(raw, tmp_path / "out", label_col="label", labels="ham", progress=False)
    assert files_of(tmp_path / "out") == before


def test_a_run_that_fails_does_not_wait_for_its_input_to_be_hashed(tmp_path, monkeypatch):
    """The input's sha256 is worked out beside the passes; an early error stops it rather than waiting on a
    large file."""
    raw = tmp_path / "raw.csv"
    raw.write_text("text,label\n" + "some words,ham\n" * 1_500_000)  # 22 MB: 22 blocks to hash
    hashed = []

    class SlowDigest:  # a slow disk: 0.2 s a block
        def __init__(self):
            self.digest = hashlib.new("sha256")

        def update(self, block):
            time.sleep(0.2)
            hashed.append(len(block))
            self.digest.update(block)

        def hexdigest(self):
            return self.digest.hexdigest()

    monkeypatch.setattr(pipeline.hashlib, "sha256", SlowDigest)
    with pytest.raises(GenlabError, match="no column 'nope'"):
        prepare(raw, tmp_path / "out", text_col="text", label_col="nope", progress=False)
    assert len(hashed) < 15 and not (tmp_path / "out").exists()


def test_exact_dedupe_keeps_the_first_of_each_full_hash():
    rng = np.random.default_rng(1)
    hashes = rng.integers(0, 2**63, (50_000, 2), dtype=np.uint64)
    hashes[rng.integers(0, 50_000, 3000)] = hashes[rng.integers(0, 50_000, 3000)]  # true repeats
    halves = rng.integers(0, 50_000, 3000)
    hashes[halves, 0] = hashes[rng.integers(0, 50_000, 3000), 0]  # same first half only: not repeats
    expected = ~pd.DataFrame(hashes).duplicated().to_numpy()
    assert np.array_equal(first_occurrences(hashes, block=4096), expected) and (~expected).sum() > 2000


def test_per_record_arrays_are_joined_as_they_were_and_let_go():
    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 2**63, (int(n), 2), dtype=np.uint64) for n in rng.integers(0, 300_000, 40)]
    expected = np.concatenate(parts)
    whole = pipeline.joined(parts)
    assert whole.dtype == np.uint64 and np.array_equal(whole, expected) and parts == []


def test_a_corrupt_image_is_named_and_nothing_is_written(tmp_path):
    make_images(tmp_path / "imgs", per_class=3)
    (tmp_path / "imgs" / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(GenlabError, match=r"imgs/dog/broken.png: not a readable image"):
        prepare(tmp_path / "imgs", tmp_path / "out", split="100", progress=False)
    assert not (tmp_path / "out").exists()


def test_out_that_is_not_a_prepared_dataset_is_refused(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(GenlabError, match="holds files genlab did not make"):
        prepare(write_csv(tmp_path / "raw.csv"), tmp_path / "mine", progress=False)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


# ---- report ----


def test_report_counts_splits_missing_duplicates_labels_and_draws_lengths(tmp_path):
    raw = write_csv(tmp_path / "raw.csv")
    prepare(raw, tmp_path / "out", text_col="text", label_col="label", dedupe=True, dropna="text",
            split="70/15/15", progress=False)
    result = report(tmp_path / "out")
    assert {s: result["splits"][s]["records"] for s in ("train", "val", "test")} == {"train": 134, "val": 29, "test": 29}
    assert result["duplicates_removed"] == {"exact": 2, "normalized_text": 0, "near": 0}
    assert result["dropped_missing"] == 8
    train = result["splits"]["train"]
    assert train["missing"]["feature1"] == table(tmp_path / "out", "train")["feature1"].isna().sum() > 0
    assert sum(v["records"] for v in train["labels"].values()) == 134
    assert [c["kind"] for c in result["columns"]] == ["int", "string", "category", "int", "float"]  # the label: few values
    assert [c["written_as"] for c in result["columns"]] == ["int64", "string", "dictionary<int32, string>", "int64", "double"]
    assert (tmp_path / "out" / "text_lengths.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == json.loads(json.dumps(result))


def test_report_of_a_folder_that_is_not_prepared(tmp_path):
    with pytest.raises(GenlabError, match="not a prepared dataset"):
        report(tmp_path)


# ---- types that survive ----


def test_dates_times_and_categories_are_written_as_real_types_in_every_format(tmp_path):
    """ISO dates and date-times are found without being named, a column --parse-dates names is read whatever its
    spelling (an offset converted to UTC), text with few repeated values is a category; Parquet gets date32,
    timestamp and dictionary types, HDF5 counts since the epoch with the unit beside them, CSV and JSON ISO text;
    and each output read again keeps its kinds."""
    import datetime as dt

    import h5py
    import pyarrow.parquet as pq

    rows = [{"id": i, "day": f"2024-03-{i % 28 + 1:02d}", "at": f"2024-03-01T{i % 24:02d}:30:00",
             "us": f"{i % 12 + 1}/{i % 28 + 1}/2023 10:00+02:00", "kind": "ab"[i % 2], "note": f"n{i}"} for i in range(40)]
    raw = tmp_path / "raw.csv"
    pd.DataFrame(rows).to_csv(raw, index=False)
    kinds = {"id": "int", "day": "date", "at": "datetime", "us": "datetime", "kind": "category", "note": "string"}
    for fmt in ("parquet", "hdf5", "csv", "jsonl"):
        out = tmp_path / fmt
        record = prepare(raw, out, parse_dates="us", format=fmt, split="100", progress=False)
        assert {c["name"]: c["kind"] for c in record["columns"]} == kinds, fmt
        again = prepare(next(out.glob("train.*")), tmp_path / f"{fmt}-again", split="100", progress=False)
        assert {c["name"]: c["kind"] for c in again["columns"]} == kinds, fmt  # the kinds survive a round trip
    table = pq.read_table(tmp_path / "parquet" / "train.parquet")
    assert [str(table.schema.field(c).type) for c in ("day", "at", "us")] == ["date32[day]", "timestamp[us]", "timestamp[us]"]
    assert str(table.schema.field("kind").type).startswith("dictionary<values=string")
    first = table.to_pylist()[0]
    source = rows[first["id"]]
    assert first["day"] == dt.date.fromisoformat(source["day"]) and first["at"] == dt.datetime.fromisoformat(source["at"])
    assert first["us"] == dt.datetime.strptime(source["us"][:-6], "%m/%d/%Y %H:%M") - dt.timedelta(hours=2)  # in UTC
    with h5py.File(tmp_path / "hdf5" / "train.h5") as f:
        days = f["columns/day"]
        assert dict(days.attrs)["unit"] == "days" and days.dtype == "i4"
    bad = tmp_path / "bad.csv"  # a value --parse-dates cannot read is one line naming the column
    pd.DataFrame({"when": ["2024-01-01", "not a date"]}).to_csv(bad, index=False)
    with pytest.raises(GenlabError, match="column 'when': 'not a date' is not a date or time"):
        prepare(bad, tmp_path / "bad-out", parse_dates="when", split="100", progress=False)
    assert not (tmp_path / "bad-out").exists()
