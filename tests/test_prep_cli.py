"""`genlab data prepare|report` from the command line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genlab.cli import app
from genlab.cli.data import data_app  # noqa: F401  (registers `data` on the app)

from test_prep import write_csv

ISSUE_COMMAND = ("--text-col text --label-col label --dedupe --dropna text --clean strip-punct,collapse-space "
                 "--split 70/15/15 --stratify label --seed 42 --normalize feature1,feature2 --augment eda "
                 "--format parquet").split()


def test_the_issue_command_then_report(tmp_path):
    raw = write_csv(tmp_path / "raw.csv")
    out = tmp_path / "prepared"
    runner = CliRunner()
    result = runner.invoke(app, ["data", "prepare", str(raw), *ISSUE_COMMAND, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "train" in result.output and (out / "pipeline.json").is_file()
    result = runner.invoke(app, ["data", "report", str(out)])
    assert result.exit_code == 0, result.output
    for heading in ("records", "missing:train", "duplicates removed: exact 2", "label balance", "text length"):
        assert heading in result.output
    as_json = runner.invoke(app, ["data", "report", str(out), "--json"])
    assert json.loads(as_json.output)["splits"]["val"]["records"] > 0


def test_help_everywhere():
    runner = CliRunner()
    for command in (["data", "--help"], ["data", "prepare", "--help"], ["data", "report", "--help"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 0 and "Usage" in result.output
    assert "--stratify" in runner.invoke(app, ["data", "prepare", "--help"]).output


def test_a_user_error_is_one_line_and_exit_status_1(tmp_path):
    raw = write_csv(tmp_path / "raw.csv")
    program = "import sys; import genlab.cli.data; from genlab.cli import main; sys.argv[0] = 'genlab'; main()"
    completed = subprocess.run(
        [sys.executable, "-c", program, "data", "prepare", str(raw), "--split", "70/15/10", "--out", str(tmp_path / "o")],
        capture_output=True, text=True,
    )
    assert completed.returncode == 1
    assert completed.stderr == "error: --split 70/15/10: ratios sum to 95, not 100\n"
    assert not (tmp_path / "o").exists()


def test_a_full_disk_is_one_line_naming_the_file_and_replaces_nothing(tmp_path):
    raw = write_csv(tmp_path / "raw.csv")
    (tmp_path / "o").mkdir()
    program = ("import sys, genlab.cli.data, genlab.prep.formats as formats\n"
               "from genlab.cli import main\n"
               "class FullDisk:\n"
               "    def __init__(self, file): self.inner = file\n"
               "    def write(self, data): raise OSError(28, 'No space left on device')\n"
               "    def __getattr__(self, name): return getattr(self.inner, name)\n"
               "opened = formats.HashedFile.__init__\n"
               "def init(self, path):\n"
               "    opened(self, path)\n"
               "    if path.name == 'val.txt': self.file = FullDisk(self.file)\n"
               "formats.HashedFile.__init__ = init\n"
               "sys.argv[0] = 'genlab'; main()")
    completed = subprocess.run([sys.executable, "-c", program, "data", "prepare", str(raw), "--text-col", "text",
                                "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert completed.returncode == 1
    assert completed.stderr.count("\n") == 1 and completed.stderr.startswith("error: ")
    assert completed.stderr.endswith("val.txt: No space left on device\n") and "internal error" not in completed.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o", "raw.csv"] and not any((tmp_path / "o").iterdir())


def test_a_part_of_speech_profile_with_a_tagger_trained_here_and_a_one_line_error_without_its_data(tmp_path, cli):
    from nltk.tag.perceptron import PerceptronTagger

    from genlab.prep import report

    raw = write_csv(tmp_path / "raw.csv")
    out = tmp_path / "prepared"
    assert CliRunner().invoke(app, ["data", "prepare", str(raw), "--text-col", "text", "--out", str(out)]).exit_code == 0
    # Texts read "Record 12: the cat is good!": a tagger trained on a few hand-tagged sentences of that shape.
    tagged = [[("Record", "NN"), ("7", "CD"), (":", ":"), ("the", "DT"), (word, "NN"), ("is", "VBZ"), (adj, "JJ"), ("!", ".")]
              for word in ("cat", "dog", "sky") for adj in ("good", "bad", "fine")]
    tagger = PerceptronTagger(load=False)
    tagger.train(tagged, nr_iter=5)
    profile = report(out, pos=True, tagger=tagger)["pos"]
    assert set(profile) <= {"NN", "CD", ":", "DT", "VBZ", "JJ", "."} and abs(sum(profile.values()) - 1) < 1e-3
    assert profile["DT"] == profile["VBZ"] > 0.1  # one "the" and one "is" per text
    try:
        PerceptronTagger()
        installed = True
    except (LookupError, OSError):
        installed = False
    r = cli("data", "report", out, "--pos")
    if installed:
        assert r.returncode == 0 and "parts of speech" in r.stdout
    else:  # nothing is downloaded: one line says how to install the tagger's data
        assert r.returncode == 1 and r.stderr.strip().splitlines() == [
            "error: --pos: NLTK's tagger data is not installed here; install it once with "
            "`python -m nltk.downloader averaged_perceptron_tagger_eng`"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_removes_what_was_being_built(tmp_path, signum):
    """A prepare stopped by SIGTERM (a job scheduler's, a container's) or SIGHUP (its terminal closed: this used
    to kill it on the spot) leaves neither its half-built folder nor the scan's spill beside --out, and says it
    was stopped."""
    raw = tmp_path / "raw.csv"
    raw.write_text("text,label,x\n" + "".join(f"words number {i} here,{'ab'[i % 2]},{i}\n" for i in range(1_500_000)))
    genlab = str(Path(sys.executable).with_name("genlab"))
    proc = subprocess.Popen([genlab, "data", "prepare", str(raw), "--out", str(tmp_path / "out"), "--text-col", "text",
                             "--dedupe", "--augment", "eda"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".out.*.tmp/.scanned.arrows")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "finished before it could be stopped: make the input larger"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum and "terminated" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw.csv"]
