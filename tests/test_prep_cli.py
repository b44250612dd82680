"""`genlab data prepare|report` from the command line."""

from __future__ import annotations

import json
import subprocess
import sys

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
