"""`genlab data prepare --engine dask`: a real two-worker Dask cluster on this machine gives the same files as
the local engines, bad input gets the same one-line errors, and the CLI starts and stops its own cluster.

Every test makes its own data in tmp_path.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from genlab.core.errors import GenlabError
from genlab.prep import prepare

from test_prep import bad_inputs
from test_prep_engines import JSON_OPTIONS, OPTIONS, files_of, near_duplicate_csv, tricky_csv, tricky_jsonl

distributed = pytest.importorskip("dask.distributed")

pytestmark = pytest.mark.xdist_group("dask")  # one cluster for the module's tests


@pytest.fixture(scope="module")
def scheduler():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def test_a_two_worker_cluster_writes_the_local_engines_files(tmp_path, scheduler):
    # The CSV holds quoted fields with newlines in them: partitions must be cut between records, not inside one.
    raw = tricky_csv(tmp_path / "raw.csv", n=600)
    synonyms = tmp_path / "syn.json"
    synonyms.write_text(json.dumps({"good": ["great", "fine"], "bad": ["poor"]}))
    local = prepare(raw, tmp_path / "local", synonyms=synonyms, progress=False, **OPTIONS)
    spread = prepare(raw, tmp_path / "dask", synonyms=synonyms, engine="dask", address=scheduler, progress=False,
                     **OPTIONS)
    assert spread["steps"][0]["params"]["engine"] == "dask"
    assert spread["input"]["records"] == local["input"]["records"] and spread["splits"] == local["splits"]
    assert files_of(tmp_path / "dask") == files_of(tmp_path / "local")


def test_jsonl_on_the_cluster_too(tmp_path, scheduler):
    raw = tricky_jsonl(tmp_path / "raw.jsonl", n=500)
    prepare(raw, tmp_path / "local", progress=False, **JSON_OPTIONS)
    record = prepare(raw, tmp_path / "dask", engine="dask", address=scheduler, progress=False, **JSON_OPTIONS)
    assert record["steps"][0]["params"]["engine"] == "dask"
    assert files_of(tmp_path / "dask") == files_of(tmp_path / "local")


def test_near_duplicates_are_found_across_partitions(tmp_path, scheduler):
    # The changed copies sit at the end of the file, the texts they copy at its start: other partitions.
    raw = near_duplicate_csv(tmp_path / "raw.csv")
    options = dict(text_col="text", dedupe_near=0.8, split="80/10/10", progress=False)
    prepare(raw, tmp_path / "local", **options)
    spread = prepare(raw, tmp_path / "dask", engine="dask", address=scheduler, **options)
    removed = next(s for s in spread["steps"] if s["step"] == "dedupe")["removed"]["near"]
    assert removed >= 45 and files_of(tmp_path / "dask") == files_of(tmp_path / "local")


def test_bad_input_is_the_same_one_line_on_the_cluster(tmp_path, scheduler):
    out = tmp_path / "out"
    for source, options, message in bad_inputs(tmp_path):
        with pytest.raises(GenlabError) as error:
            prepare(source, out, progress=False, engine="dask", address=scheduler, **options)
        assert message in str(error.value) and "\n" not in str(error.value)
        assert not out.exists()


def test_a_scheduler_that_does_not_answer_is_one_line(tmp_path):
    raw = tricky_csv(tmp_path / "raw.csv", n=20)
    with pytest.raises(GenlabError, match="--address tcp://127.0.0.1:9: no Dask scheduler answers"):
        prepare(raw, tmp_path / "out", engine="dask", address="tcp://127.0.0.1:9", progress=False)
    for address in ("notaurl", "http://127.0.0.1:9", "tcp://", "inproc://x"):
        with pytest.raises(GenlabError, match=f"--address {address}: "):
            prepare(raw, tmp_path / "out", engine="dask", address=address, progress=False)
    with pytest.raises(GenlabError, match="--workers 100000: from 1 to"):
        prepare(raw, tmp_path / "out", engine="dask", workers=100_000, progress=False)
    with pytest.raises(GenlabError, match="--address and --workers are for --engine dask"):
        prepare(raw, tmp_path / "out", workers=2, progress=False)


def test_the_cli_starts_and_stops_its_own_cluster(tmp_path):
    raw = tricky_csv(tmp_path / "raw.csv", n=200)
    command = [sys.executable, "-m", "genlab", "data", "prepare", str(raw), "--out", str(tmp_path / "out"),
               "--text-col", "text", "--label-col", "label", "--dropna", "text,label", "--dedupe", "--split", "70/15/15",
               "--engine", "dask", "--workers", "2", "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "out" / "pipeline.json").read_text())
    assert record["steps"][0]["params"]["engine"] == "dask" and sum(record["splits"].values()) > 100
