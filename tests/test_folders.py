"""Never lose a user's files: only a folder genlab marked is resumed, emptied or replaced, by every
command that writes one, and no command deletes its own input."""

import os

import pytest

import genlab
from genlab.core.errors import GenlabError
from genlab.core.folders import MARKER, check_output_file, claim, marker_kind
from conftest import tiny_config


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def users_folder(tmp_path):
    folder = tmp_path / "thesis"
    (folder / "chapters").mkdir(parents=True)
    (folder / "chapters" / "one.tex").write_text("precious")
    (folder / "config.toml").write_text("[mine]\n")  # looks like a run to a careless check
    (folder / "checkpoint").mkdir()
    return folder


@pytest.mark.parametrize("overwrite", [False, True])
def test_train_never_touches_a_folder_genlab_did_not_make(users_folder, corpus_file, overwrite):
    before = _snapshot(users_folder)
    with pytest.raises(GenlabError, match="genlab did not make"):
        genlab.train(tiny_config(corpus_file, users_folder), progress=False, overwrite=overwrite)
    assert _snapshot(users_folder) == before


def test_current_home_and_their_parents_are_refused_even_with_overwrite(tmp_path, corpus_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("keep")
    for out in (".", str(tmp_path.parent), os.path.expanduser("~")):
        with pytest.raises(GenlabError, match="current folder|home folder"):
            genlab.train(tiny_config(corpus_file, out), progress=False, overwrite=True)
    assert (tmp_path / "keep.txt").read_text() == "keep"


def test_data_inside_out_and_out_inside_data_are_refused_before_anything_is_removed(tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("some text\n" * 200)
    with pytest.raises(GenlabError, match="lies inside the input folder"):
        genlab.train(tiny_config(notes, notes / "run"), progress=False)
    run = tmp_path / "run"
    genlab.train(tiny_config(notes / "a.txt", run, max_steps=2), progress=False)
    (run / "mine.txt").write_text("data I put in the run folder\n" * 100)
    with pytest.raises(GenlabError, match="holds the input"):
        genlab.train(tiny_config(run / "mine.txt", run, max_steps=2), progress=False, overwrite=True)
    assert (run / "mine.txt").exists() and marker_kind(run) == "run"


def test_a_marked_run_is_resumed_or_replaced_and_only_then(tmp_path, corpus_file):
    out = tmp_path / "run"
    genlab.train(tiny_config(corpus_file, out, max_steps=4), progress=False)
    assert marker_kind(out) == "run" and (out / MARKER).is_file()
    assert genlab.train(tiny_config(corpus_file, out, max_steps=6), progress=False).results["step"] == 6  # resumed
    (out / "notes.txt").write_text("mine")
    genlab.train(tiny_config(corpus_file, out, max_steps=3), progress=False, overwrite=True)
    assert not (out / "notes.txt").exists() and marker_kind(out) == "run"  # replaced: it was genlab's
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_a_failed_fresh_run_leaves_nothing_behind(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(GenlabError, match="no such file"):
        genlab.train(tiny_config(tmp_path / "missing.txt", out), progress=False)
    assert not out.exists()


def test_claim_kinds(tmp_path):
    assert claim(tmp_path / "a", "prepared") is False and marker_kind(tmp_path / "a") == "prepared"
    assert claim(tmp_path / "a", "prepared") is True
    with pytest.raises(GenlabError, match="is a genlab prepared folder"):
        claim(tmp_path / "a", "run")
    (tmp_path / "file").write_text("x")
    with pytest.raises(GenlabError, match="is a file"):
        claim(tmp_path / "file", "run")


def test_data_prepare_refuses_an_input_inside_the_old_out(tmp_path):
    from genlab.prep import prepare

    out = tmp_path / "prepared"
    csv = tmp_path / "raw.csv"
    csv.write_text("text,label\n" + "".join(f"row number {i},{i % 2}\n" for i in range(40)))
    prepare(csv, out, text_col="text", progress=False)
    inside = out / "raw.csv"
    inside.write_bytes(csv.read_bytes())
    before = _snapshot(out)
    with pytest.raises(GenlabError, match="holds the input"):
        prepare(inside, out, text_col="text", progress=False)
    assert _snapshot(out) == before


def test_eval_code_and_compare_and_demo_refuse_a_users_folder(users_folder, tmp_path):
    from genlab.workflows.compare import compare
    from genlab.workflows.demo import run_demo
    from genlab.metrics.code import eval_code

    problems = tmp_path / "p.jsonl"
    problems.write_text('{"task_id": "t", "prompt": "def f():\\n", "entry_point": "f", "test": "def check(c):\\n    assert c() == 1\\n", "canonical_solution": "    return 1\\n"}\n')
    before = _snapshot(users_folder)
    for call in (lambda: eval_code(problems, users_folder, progress=False),
                 lambda: compare([], users_folder, models=["ngram"], data=str(problems), progress=False),
                 lambda: run_demo(users_folder, ["text"], 1, progress=False)):
        with pytest.raises(GenlabError, match="genlab did not make"):
            call()
    assert _snapshot(users_folder) == before


def test_sample_out_never_replaces_a_folder_or_a_file_of_another_kind(tmp_path):
    (tmp_path / "pic.png").write_bytes(b"\x89PNG\r\n\x1a\nrest")
    (tmp_path / "song.mid").write_bytes(b"MThd....")
    (tmp_path / "notes.txt").write_text("my notes")
    (tmp_path / "bin.dat").write_bytes(b"\0\1\2")
    check_output_file(tmp_path / "pic.png", "png")
    check_output_file(tmp_path / "notes.txt", "text")
    check_output_file(tmp_path / "new.txt", "text")
    for path, kind in ((tmp_path, "text"), (tmp_path / "pic.png", "text"), (tmp_path / "notes.txt", "png"),
                       (tmp_path / "song.mid", "wav"), (tmp_path / "bin.dat", "text")):
        with pytest.raises(GenlabError):
            check_output_file(path, kind)


def test_remove_deletes_only_what_genlab_owns(tmp_path):
    from genlab.core.folders import remove

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("keep")
    for target in (tmp_path / "mine", tmp_path / "mine" / "keep.txt"):
        with pytest.raises(GenlabError, match="refusing to delete"):
            remove(target)
    assert (tmp_path / "mine" / "keep.txt").read_text() == "keep"
    claim(tmp_path / "run", "run")
    (tmp_path / "run" / "checkpoint" / "old").mkdir(parents=True)
    remove(tmp_path / "run" / "checkpoint" / "old")  # inside a marked folder: genlab's
    remove(tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_an_atomic_write_never_replaces_a_device_or_a_pipe(tmp_path):
    """The write renames a finished temporary file over its destination: given /dev/null (`--out /dev/null`),
    it replaced the device with a regular file, as root. Now anything but a regular file is refused."""
    import stat

    from genlab.core.files import atomic_write_text

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    with pytest.raises(GenlabError, match="pipe: exists and is not a regular file; refusing to replace it"):
        atomic_write_text(pipe, "text")
    assert stat.S_ISFIFO(os.stat(pipe).st_mode)
    atomic_write_text(tmp_path / "plain.txt", "a")
    atomic_write_text(tmp_path / "plain.txt", "b")  # a regular file is replaced as before
    assert (tmp_path / "plain.txt").read_text() == "b"
