"""Every run and every export carries a model card in the Hugging Face Hub's format, with the run's own figures."""

import json

from conftest import tiny_config
from genlab.core.cards import read_card


def test_a_run_and_its_export_carry_a_hub_model_card_with_their_figures(tmp_path, corpus_file, cli):
    import genlab

    run = genlab.train(tiny_config(corpus_file, tmp_path / "my-run", max_steps=6, eval_interval=3), progress=False)
    meta, body = read_card(run.path / "README.md")
    assert meta["library_name"] == "genlab" and meta["pipeline_tag"] == "text-generation"
    assert {"genlab", "text", "gpt"} <= set(meta["tags"]) and meta["datasets"] == [corpus_file.name]
    (result,) = meta["model-index"][0]["results"]
    scores = {m["type"]: m["value"] for m in result["metrics"]}
    assert scores == {k: round(run.results[k], 5) for k in ("val_loss", "val_bits_per_char")}  # the whole val split's
    assert str(tmp_path) not in (run.path / "README.md").read_text()  # no folder of the user's in a card
    assert "genlab sample my-run" in body and "## Limits" in body

    r = cli("export", run.path, "--format", "onnx", "--out", tmp_path / "onnx-out")
    assert r.returncode == 0, r.stderr
    meta, body = read_card(tmp_path / "onnx-out" / "README.md")
    assert "export-onnx" in meta["tags"] and "`onnx` export of the genlab run `my-run`" in body
    report = json.loads((tmp_path / "onnx-out" / "genlab_export.json").read_text())
    assert report["format"] == "onnx" and meta["model-index"][0]["results"][0]["metrics"] == result["metrics"]
    r = cli("report", run.path)
    assert r.returncode == 0 and "model card" in (run.path / "index.html").read_text()
