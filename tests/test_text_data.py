import numpy as np
import pytest

from genlab.core.config import build_config
from genlab.datasets.named import build_python_docs, cache_dir, resolve_source, stdlib_files
from genlab.core.files import read_text_file
from genlab.datasets.text import read_text_pieces, select_files
from genlab.datasets.token_store import TokenStore, eval_windows
from genlab.core.errors import GenlabError
from genlab.tasks.text import TextSource
from genlab.tokenizers import load_tokenizer, save_tokenizer, train_tokenizer
from genlab.tokenizers.char import CharTokenizer


def test_folder_is_read_recursively_with_include_and_exclude(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.md").write_text("one")
    (tmp_path / "two.txt").write_text("two")
    (tmp_path / "skip.log").write_text("log")
    (tmp_path / ".hidden.md").write_text("secret")
    assert [p.name for p in select_files(tmp_path)] == ["one.md", "skip.log", "two.txt"]
    assert [p.name for p in select_files(tmp_path, include=["*.md", "*.txt"])] == ["one.md", "two.txt"]
    assert [p.name for p in select_files(tmp_path, exclude=["a/*"])] == ["skip.log", "two.txt"]


def test_non_utf8_file_is_an_error_naming_file_and_offset(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\u00e9 ok".encode("latin-1"))
    with pytest.raises(GenlabError, match=r"latin1.txt: not UTF-8 text \(bad byte 0xe9 at offset 3\)"):
        read_text_file(bad)


def test_missing_and_empty_inputs_are_one_line_errors(tmp_path):
    cfg = build_config(None, {"data": str(tmp_path / "nope")})
    with pytest.raises(GenlabError, match="nope: no such file or folder"):
        TextSource().files(cfg)
    with pytest.raises(GenlabError, match="/dev/zero: not a regular file or folder"):
        TextSource().files(build_config(None, {"data": "/dev/zero"}))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(GenlabError, match="empty.txt: the file is empty"):
        TextSource().files(build_config(None, {"data": str(empty)}))
    (tmp_path / "d").mkdir()
    with pytest.raises(GenlabError, match="no files match"):
        TextSource().files(build_config(None, {"data": str(tmp_path / "d")}))


@pytest.mark.xdist_group("shared-caches")  # python-docs and the digits features, built once
def test_python_docs_is_built_offline_from_the_stdlib_and_cached():
    path = resolve_source("python-docs", progress=False)
    text = path.read_text()
    assert len(text) > 200_000
    assert "Return" in text and "def " not in text[:2000]  # docstrings, not code
    mtime = path.stat().st_mtime_ns
    assert build_python_docs(cache_dir(), progress=False).stat().st_mtime_ns == mtime  # built once


def test_python_stdlib_is_the_running_pythons_library_without_tests():
    files = stdlib_files()
    names = {p.name for p in files}
    assert {"os.py", "json/__init__.py".split("/")[-1], "functools.py"} <= names
    assert not any("/test/" in p.as_posix() or "site-packages" in p.as_posix() for p in files)


@pytest.mark.parametrize("kind", ["char", "bpe", "word"])
def test_tokenizer_round_trips_and_saves(tmp_path, kind):
    text = "Hello, wörld!\n\tIndented  text — ünïcode ✓ 12345\n"
    cfg = build_config(None, {}, [f"tokenizer.kind='{kind}'", "tokenizer.vocab_size=300", "tokenizer.min_frequency=1"]).tokenizer
    tok = train_tokenizer(kind, [text * 20], cfg)
    assert tok.decode(tok.encode(text)) == text
    save_tokenizer(tok, tmp_path / "tokenizer.json")
    again = load_tokenizer(tmp_path / "tokenizer.json")
    assert again.encode(text) == tok.encode(text) and again.vocab_size == tok.vocab_size
    # unit lengths: chars for char-level and word-level, UTF-8 bytes for byte-level BPE
    expected = len(text) if kind in ("char", "word") else len(text.encode())
    assert int(tok.unit_lengths()[tok.encode(text)].sum()) == expected


def test_char_tokenizer_names_an_unknown_character():
    tok = CharTokenizer("abc")
    with pytest.raises(GenlabError, match="'z' is not in this model's vocabulary"):
        tok.encode("abz")


def test_token_store_splits_are_disjoint_deterministic_and_complete(tmp_path):
    docs = [np.arange(i * 1000, i * 1000 + 997) % 60000 for i in range(20)]
    lengths = np.ones(60000, dtype=np.int64)
    build = lambda dest, seed: TokenStore.build(dest, ([d] for d in docs), 60000, lengths, 0.1, 0.1, 100, seed)
    a, b, c = build(tmp_path / "a", 1), build(tmp_path / "b", 1), build(tmp_path / "c", 2)
    assert a.dtype == np.uint16
    parts = [np.asarray(a.split(s)) for s in ("train", "val", "test")]
    assert sum(len(p) for p in parts) == sum(len(d) for d in docs)
    assert sorted(np.concatenate(parts).tolist()) == sorted(np.concatenate(docs).tolist())  # every token exactly once
    assert 0.05 < len(parts[1]) / 19940 < 0.15 and 0.05 < len(parts[2]) / 19940 < 0.15
    assert all(np.array_equal(a.split(s), b.split(s)) for s in ("train", "val", "test"))  # same seed, same split
    assert not np.array_equal(a.split("val"), c.split("val"))  # another seed, another split


def test_eval_windows_predict_every_token_once():
    tokens = np.arange(103)
    targets = [t for _, y in eval_windows(tokens, block_size=10, batch_size=4) for t in y.flatten().tolist() if t >= 0]
    assert targets == list(range(1, 103))


def test_large_file_is_read_in_line_aligned_pieces(tmp_path):
    text = "".join(f"line {i} — ünïcode\n" for i in range(5000)) + "no newline at the end"
    path = tmp_path / "big.txt"
    path.write_text(text)
    pieces = list(read_text_pieces(path, piece_bytes=4096))
    assert len(pieces) > 20 and "".join(pieces) == text
    assert all(p.endswith("\n") for p in pieces[:-1])
    path.write_bytes(text.encode() + b"\xff tail")
    with pytest.raises(GenlabError, match=f"big.txt: not UTF-8 text \\(bad byte 0xff at offset {len(text.encode())}\\)"):
        list(read_text_pieces(path, piece_bytes=4096))


def test_the_tail_split_is_the_end_of_the_corpus_as_nanogpt_cuts_it(tmp_path):
    import genlab
    from conftest import make_corpus, tiny_config

    text = make_corpus(20_000, seed=5)
    (tmp_path / "corpus.txt").write_text(text)
    cfg = tiny_config(tmp_path / "corpus.txt", tmp_path / "run", max_steps=1)
    cfg["data"] = dict(cfg.get("data", {}), source=str(tmp_path / "corpus.txt"), split="tail", val_fraction=0.1)
    genlab.train(cfg, progress=False)
    store, tokenizer = TokenStore(tmp_path / "run" / "data"), load_tokenizer(tmp_path / "run" / "tokenizer.json")
    n = len(text)  # one file, character tokens: nanoGPT's train = text[:int(n * 0.9)], val = the rest
    assert tokenizer.decode(store.split("val")) == text[int(n * 0.9):]
    assert tokenizer.decode(store.split("train")) == text[: int(n * 0.9)]
    assert store.header["split"] == "tail"


def test_word_tokens_are_treebank_words_with_their_space_and_unknown_words_say_so():
    from genlab.tokenizers.word import WordTokenizer, pieces

    text = 'He said, "It\'s fine."\n\nThen  left (quickly).\n'
    assert list(pieces(text))[:8] == ["He", " said", ",", ' "', "It", "'s", " fine", "."]
    assert "".join(pieces(text)) == text  # the pieces are the text itself: decoding is concatenation
    tok = WordTokenizer.train([text * 3, "He said no.\n"], None)  # min_frequency 2: "no" is out
    assert tok.decode(tok.encode("He said no, fine.")) == "He said <unk>, fine."
    assert tok.decode(tok.encode(text)) == text


def test_tokenizing_on_several_processes_builds_the_same_store(tmp_path):
    """Pieces of a file larger than one piece, several files, an empty one and a BPE tokenizer: two worker
    processes give the store one process gives, byte for byte."""
    from conftest import make_corpus
    from genlab.tokenizers.parallel import encode_documents

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(3):
        (corpus / f"f{i}.txt").write_text(make_corpus(30_000, seed=i))
    (corpus / "empty.txt").write_text("")
    (corpus / "big.txt").write_text(make_corpus(400_000, seed=9))
    source = TextSource()
    files = sorted(corpus.iterdir())
    tokenizer = train_tokenizer("bpe", (read_text_file(f) for f in files), build_config(None, {}, ["tokenizer.kind=bpe"]).tokenizer)
    save_tokenizer(tokenizer, tmp_path / "tokenizer.json")
    stores = []
    for workers in (1, 2):
        documents = ((p for p in read_text_pieces(f, piece_bytes=50_000)) for f in files)
        encoded = encode_documents(tokenizer, tmp_path / "tokenizer.json", documents, workers)
        store = TokenStore.build(tmp_path / f"store{workers}", encoded, tokenizer.vocab_size, tokenizer.unit_lengths(),
                                 0.1, 0.0, 256, 0, separator=tokenizer.encode(source.separator))
        stores.append(store)
    for split in ("train", "val"):
        assert np.array_equal(stores[0].split(split), stores[1].split(split))
    assert len(stores[0].split("train")) > 10_000


def test_bpe_training_sees_long_runs_without_spaces_in_pieces_and_loses_no_text():
    """One 400 KB run of letters took BPE training 39 s (a 4 MB one, more than ten minutes, deaf to SIGTERM):
    every merge revisits every word holding its pair. The trainer now gets such runs in 256-character pieces,
    each a text of its own; the pieces join back to the documents exactly."""
    import random
    import re

    from genlab.tokenizers.bpe import LONGEST_WORD, bounded_words

    rng = random.Random(0)
    blob = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(100_000))
    docs = ["the cat sat on the mat. " * 20, f"before {blob} after\n", "x" * 257, "y" * 256,
            "a = 1" + " " * 100_000 + "b = 2\n" + "\n" * 1000]  # 400,000 spaces kept the code tokenizer busy for minutes
    pieces = list(bounded_words(docs))
    assert max(len(run) for piece in pieces for run in re.findall(r"\S+|\s+", piece)) == LONGEST_WORD
    assert "".join(pieces) == "".join(docs)
    for kind in ("bpe", "code"):
        tokenizer = train_tokenizer(kind, iter(docs), build_config(None, {}, [f"tokenizer.kind={kind}"]).tokenizer)
        assert tokenizer.decode(tokenizer.encode(docs[1])) == docs[1] and tokenizer.decode(tokenizer.encode(docs[4])) == docs[4]


def test_a_char_vocabulary_has_a_bound():
    """A 4 MB file of every Unicode character made a char run ask for 18 GB of logits per batch: the machine's
    whole memory. Past 32,768 distinct characters it is one line pointing at BPE."""
    chars = "".join(chr(c) for c in [*range(0x4E00, 0x4E00 + 20_000), *range(0x20000, 0x20000 + 20_000)])  # CJK ideographs
    with pytest.raises(GenlabError, match=r"^the corpus holds 40,000 distinct characters; a char tokenizer takes at most "
                                          r"32,768 \(use --tokenizer bpe"):
        train_tokenizer("char", iter([chars]), None)
    assert train_tokenizer("char", iter([chars[:30_000]]), None).vocab_size == 30_001  # and "\n"
