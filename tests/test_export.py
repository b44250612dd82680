"""`genlab export --format hf`: a GPT run as a transformers folder that AutoModelForCausalLM and AutoTokenizer
load with the run's logits and tokens, and that `genlab sample` takes like a run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import genlab
from conftest import require_tools, tiny_config
from genlab.core.errors import GenlabError


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from conftest import make_corpus

    root = tmp_path_factory.mktemp("export")
    corpus = root / "corpus.txt"
    corpus.write_text(make_corpus())
    char = genlab.train(tiny_config(corpus, root / "char", max_steps=20), progress=False)
    bpe = genlab.train({**tiny_config(corpus, root / "bpe", max_steps=5), "tokenizer": {"kind": "bpe", "vocab_size": 300}},
                       progress=False)
    rope = tiny_config(corpus, root / "rope", max_steps=2)
    rope["model"]["rope"] = True
    rnns = {}
    for name in ("lstm", "gru", "rnn"):
        cfg = tiny_config(corpus, root / name, max_steps=2)
        cfg["model"] = {"name": name, "n_layer": 2, "n_embd": 16}
        rnns[name] = genlab.train(cfg, progress=False).path
    for mixing in ("learned", "fourier"):
        cfg = tiny_config(corpus, root / f"fnet-{mixing}", max_steps=2)
        cfg["model"] = {"name": "fnet", "n_layer": 2, "n_embd": 16, "block_size": 32, "mixing": mixing}
        rnns[f"fnet-{mixing}"] = genlab.train(cfg, progress=False).path
    return {"char": char.path, "bpe": bpe.path, "rope": genlab.train(rope, progress=False).path, **rnns, "root": root}


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_transformers_loads_the_export_with_the_runs_logits_and_tokens(runs, kind, cli):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = runs["root"] / f"hf-{kind}"
    r = cli("export", runs[kind], "--format", "hf", "--out", out)
    assert r.returncode == 0, r.stderr
    assert "max_abs_logit_difference" in r.stderr  # the parity check is printed
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    run = genlab.load(runs[kind], device="cpu")
    text = "The cat sat on a mat.\nA dog."  # within block_size (32)
    assert tokenizer.encode(text, add_special_tokens=False) == run.tokenizer.encode(text)
    ids = torch.tensor([run.tokenizer.encode(text)])
    with torch.no_grad():
        assert (model(ids).logits - run.model(ids)).abs().max().item() < 1e-5
    assert tokenizer.decode(run.tokenizer.encode(text)) == text
    report = json.loads((out / "genlab_export.json").read_text())
    assert report["format"] == "hf" and report["task"] == "text" and report["max_abs_logit_difference"] < 1e-5


def test_genlab_samples_the_export_like_the_run(runs, cli):
    out = runs["root"] / "hf-sample"
    assert cli("export", runs["char"], "--format", "hf", "--out", out).returncode == 0
    ours = genlab.load(runs["char"], device="cpu").generate("The", max_new_tokens=20, temperature=0, stop=[])[0]
    exported = genlab.load(out, device="cpu")
    assert exported.modality == "text"  # a text export has no Python stop strings
    assert exported.generate("The", max_new_tokens=20, temperature=0)[0].text == ours.text
    assert genlab.load(f"hf:{out}", device="cpu").generate("The", max_new_tokens=20, temperature=0)[0].text == ours.text
    r = cli("sample", out, "--prompt", "The", "--max-new-tokens", "20", "--temperature", "0")
    assert r.returncode == 0 and r.stdout.rstrip("\n") == "The" + ours.text


def test_what_cannot_be_exported_is_refused_in_one_line_and_writes_nothing(runs, cli, tmp_path):
    cases = [(runs["rope"], "rope = true has no transformers architecture"), (runs["lstm"], "--format hf: a lstm run does not export so (a lstm run exports with: --format onnx, --format int8, --format int8 --backend torch)")]
    for run, message in cases:
        out = tmp_path / "out"
        r = cli("export", run, "--format", "hf", "--out", out)
        assert r.returncode == 1 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not out.exists() and not list(tmp_path.glob(".out.*"))  # nothing half-written
    r = cli("export", runs["char"], "--format", "onnx-ish", "--out", tmp_path / "x")
    assert r.returncode == 1 and "--format" in r.stderr
    with pytest.raises(GenlabError, match="holds something other than an earlier export"):
        genlab_export(runs["char"], runs["bpe"])  # a run is never replaced by an export
    assert (runs["bpe"] / "config.toml").is_file()


def genlab_export(run, out):
    from genlab.export import export

    return export(run, "hf", out, progress=False)


@pytest.mark.parametrize("kind", ["char", "rope", "lstm", "gru", "rnn", "fnet-learned", "fnet-fourier"])
def test_onnx_matches_pytorch_and_samples_the_same_tokens(runs, kind, cli, tmp_path):
    run = runs[kind]
    out = tmp_path / "onnx"
    r = cli("export", run, "--format", "onnx", "--out", out)
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "genlab_export.json").read_text())
    assert report["max_abs_logit_difference"] <= 1e-4 and report["greedy_tokens_equal"]
    torch_gen, onnx_gen = genlab.load(run, device="cpu"), genlab.load(out)
    # Sampled with a seed, past the context window (block_size 32): the same tokens through the step engine.
    a = torch_gen.generate("The", n=2, max_new_tokens=45, temperature=0.9, top_k=10, seed=4)
    b = onnx_gen.generate("The", n=2, max_new_tokens=45, temperature=0.9, top_k=10, seed=4)
    assert [s.tokens for s in a] == [s.tokens for s in b]
    r = cli("sample", out, "--prompt", "The", "--max-new-tokens", "10", "--seed", "1")
    assert r.returncode == 0 and r.stdout.startswith("The")
    if kind not in ("char", "rope"):  # the GPT alone takes rows at different positions
        return
    # Rows at different positions in one call: each row as if it ran alone.
    from genlab.export.onnx import OnnxGPT

    model = OnnxGPT(out / "model.onnx", torch_gen.config.model, torch_gen.model.vocab_size)
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    past = model.init_state(2)
    _, past = model.step(ids, past)
    feeds = {"input_ids": np.array([[9], [9]]), "position_ids": np.array([[4], [2]]),
             "attention_mask": np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 1]]), "past_keys": past["k"], "past_values": past["v"]}
    logits = torch.from_numpy(model.session.run(["logits"], feeds)[0])
    with torch.no_grad():
        alone = torch_gen.model(torch.tensor([[5, 6, 9]]))[:, -1]  # row 1 as a 3-token sequence
    assert (logits[1, -1] - alone[0]).abs().max().item() < 1e-4


@pytest.mark.parametrize("kind, backend", [("char", "onnx"), ("char", "torch"), ("lstm", "torch")])
def test_int8_is_smaller_close_in_loss_and_samples(runs, kind, backend, cli, tmp_path):
    out = tmp_path / "int8"
    r = cli("export", runs[kind], "--format", "int8", "--backend", backend, "--out", out)
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "genlab_export.json").read_text())
    weights = out / ("model.onnx" if backend == "onnx" else "model_int8.safetensors")
    assert report["bytes"] < report["fp32_bytes"] and report["bytes"] == weights.stat().st_size
    assert abs(report["val_loss_change"]) < 0.1  # a tiny model: quantization costs little
    assert report["tokens_per_s_batch1"] > 0 and report["fp32_tokens_per_s_batch1"] > 0
    loaded = genlab.load(out)
    (sample,) = loaded.generate("The", max_new_tokens=12, seed=0)
    assert len(sample.tokens) == 12
    if backend == "torch":  # the folder rebuilds torch's quantized model bit for bit
        from genlab.export.torch_int8 import quantize

        ids = torch.tensor([loaded.tokenizer.encode("The cat sat")])
        with torch.no_grad():
            assert torch.equal(loaded.model(ids), quantize(genlab.load(runs[kind], device="cpu").model)(ids))


def test_int8_refuses_what_it_cannot_quantize_in_one_line(runs, cli, tmp_path):
    r = cli("export", runs["char"], "--format", "onnx", "--backend", "torch", "--out", tmp_path / "x")
    assert r.returncode == 1 and "only --format int8 has a choice of backend" in r.stderr
    r = cli("export", runs["char"], "--format", "int8", "--backend", "tflite", "--out", tmp_path / "x")
    assert r.returncode == 1 and "--backend: 'tflite' is not one of onnx, torch" in r.stderr
    assert not (tmp_path / "x").exists()


def test_the_web_export_generates_in_a_real_browser(runs, cli, tmp_path):
    """A char run exported with onnxruntime-web from npm, a BPE run with `--ort-web` pointing at those files;
    both pages open in one headless Chromium, encode like the run's tokenizer, and generate."""
    import functools
    import http.server
    import threading

    chromium = require_tools("chromium", "npm")["chromium"]
    sites = {"char": tmp_path / "web-char", "bpe": tmp_path / "web-bpe"}
    r = cli("export", runs["char"], "--format", "web", "--out", sites["char"])
    assert r.returncode == 0, r.stderr
    r = cli("export", runs["bpe"], "--format", "web", "--out", sites["bpe"], "--ort-web", sites["char"])
    assert r.returncode == 0, r.stderr
    for out in sites.values():
        assert {"index.html", "web_generator.js", "model.onnx", "vocab.json", "ort.wasm.min.js", "ort-wasm-simd-threaded.wasm"} <= {p.name for p in out.iterdir()}
        assert "http" not in (out / "index.html").read_text().split("<script>")[0].replace('charset="utf-8"', "")  # no CDN
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    from playwright.sync_api import sync_playwright

    texts, tokenizers = {}, {kind: genlab.load(runs[kind], device="cpu").tokenizer for kind in sites}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            for kind, out in sites.items():
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{server.server_address[1]}/{out.name}/index.html")
                page.wait_for_function("document.querySelector('#status').textContent == 'ready'", timeout=60_000)
                # The page's tokenizer is the run's: the same ids for words, spaces, digits, punctuation and UTF-8.
                samples = ["The cat sat on the mat.", "  two  spaces\n\nand lines", "It's 2024; you'll see", "café"]
                samples = [t for t in samples if kind == "bpe" or all(c in tokenizers[kind].chars for c in t)]
                encoded = [page.evaluate("(t) => window.genlabEncode(t)", t) for t in samples]
                assert samples and encoded == [tokenizers[kind].encode(t) for t in samples], kind
                page.fill("#prompt", "The cat")
                page.fill("#tokens", "40")  # past the context window (32) too
                page.click("#generate")
                page.wait_for_function("document.querySelector('#status').textContent.startsWith('done')", timeout=60_000)
                texts[kind] = page.text_content("#output")
            browser.close()
    finally:
        server.shutdown()
    assert all(text.startswith("The cat") for text in texts.values())
    char = texts["char"]  # 40 characters of the model's vocabulary
    assert len(char) == len("The cat") + 40 and set(char) <= set(tokenizers["char"].chars)
    # 40 byte-level tokens: a barely trained model may split characters, but text came out
    assert len(texts["bpe"].encode()) >= len("The cat") + 40 - 3  # (the last character may still wait for its bytes)


def test_an_onnx_export_is_served_like_a_run(runs, cli, tmp_path):
    import httpx

    from genlab.server import build
    from test_serve import Server

    out = tmp_path / "served"
    assert cli("export", runs["char"], "--format", "onnx", "--out", out).returncode == 0
    s = Server(build([str(out)], device="cpu"))
    try:
        r = httpx.post(s.url + "/v1/completions", timeout=60,
                       json={"model": "served", "prompt": "The", "max_tokens": 12, "temperature": 0, "seed": 0})
        assert r.status_code == 200, r.text
        expected = genlab.load(runs["char"], device="cpu").generate("The", max_new_tokens=12, temperature=0)[0].text
        assert r.json()["choices"][0]["text"] == expected
    finally:
        s.stop()


@pytest.mark.parametrize("family, model", [("gan", {"name": "gan", "hidden": [32], "latent_dim": 8}),
                                           ("vae", {"name": "vae", "channels": 8, "latent_dim": 4}),
                                           ("ddpm", {"name": "ddpm", "channels": 8, "heads": 1, "timesteps": 50})])
def test_image_networks_export_to_onnx_and_sample_the_same_pixels(family, model, cli, tmp_path):
    run = genlab.train({"task": "image", "out": str(tmp_path / family), "data": {"source": "digits"}, "model": model,
                        "train": {"max_steps": 2, "batch_size": 16, "eval_interval": 1000, "progress": False}}, progress=False)
    r = cli("export", run.path, "--format", "onnx", "--out", tmp_path / "onnx")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "onnx" / "genlab_export.json").read_text())["max_abs_difference"] <= 1e-4
    ours = genlab.load(run.path, device="cpu").generate(4, seed=3, class_label=7, steps=5)
    exported = genlab.load(tmp_path / "onnx").generate(4, seed=3, class_label=7, steps=5)
    assert all(np.array_equal(a.pixels, b.pixels) for a, b in zip(ours, exported))
    assert cli("sample", tmp_path / "onnx", "--n", "4", "--seed", "1", "--out", tmp_path / "grid.png").returncode == 0
    assert (tmp_path / "grid.png").stat().st_size > 100


def test_dcgan_exports_and_the_run_stays_in_eval_mode(cli, tmp_path):
    # torch's exporter can leave a module in training mode; BatchNorm (DCGAN) would then use batch statistics.
    run = genlab.train({"task": "image", "out": str(tmp_path / "dcgan"), "data": {"source": "digits"},
                        "model": {"name": "dcgan", "channels": 8, "latent_dim": 8},
                        "train": {"max_steps": 2, "batch_size": 16, "eval_interval": 1000, "progress": False}}, progress=False)
    from genlab.export import export

    assert export(run.path, "onnx", tmp_path / "onnx", progress=False)["max_abs_difference"] <= 1e-4
    ours, exported = genlab.load(run.path, device="cpu").generate(4, seed=3), genlab.load(tmp_path / "onnx").generate(4, seed=3)
    assert all(np.array_equal(a.pixels, b.pixels) for a, b in zip(ours, exported))


@pytest.mark.xdist_group("shared-caches")  # the digits feature network FID uses, built once
@pytest.mark.parametrize("family, model", [("ddpm", {"name": "ddpm", "channels": 8, "heads": 1, "timesteps": 50}),
                                           ("dcgan", {"name": "dcgan", "channels": 8, "latent_dim": 8})])
def test_image_int8_is_calibrated_on_the_runs_data_and_reports_fid(family, model, cli, tmp_path):
    run = genlab.train({"task": "image", "out": str(tmp_path / family), "data": {"source": "digits", "image": {"sample_steps": 5}},
                        "model": model,
                        "train": {"max_steps": 2, "batch_size": 16, "eval_interval": 1000, "progress": False}}, progress=False)
    r = cli("export", run.path, "--format", "int8", "--out", tmp_path / "int8")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "int8" / "genlab_export.json").read_text())
    assert report["backend"].startswith("onnxruntime static int8") and report["bytes"] > 0
    import onnx

    graph = onnx.load(tmp_path / "int8" / "model.onnx").graph  # convolution weights stored as int8 (this tiny
    assert sum(t.data_type == onnx.TensorProto.INT8 for t in graph.initializer) >= 2  # net gains no size from it)
    assert "QuantizeLinear" in {n.op_type for n in graph.node}
    assert "WARNING" not in r.stderr and "http" not in r.stderr  # the quantizer's advice is not the user's business
    assert report["fid_genlab_features"] > 0 and report["fp32_fid_genlab_features"] > 0 and report["images_per_s"] > 0
    assert report["fid_genlab_features_change"] == pytest.approx(report["fid_genlab_features"] - report["fp32_fid_genlab_features"])
    images = genlab.load(tmp_path / "int8").generate(4, seed=3)
    assert len(images) == 4 and images[0].pixels.shape == (8, 8, 1)
    r = cli("export", run.path, "--format", "int8", "--backend", "torch", "--out", tmp_path / "torch")
    assert r.returncode == 1 and f"a {family} run exports with: --format onnx, --format int8)" in r.stderr
    assert not (tmp_path / "torch").exists()


def test_the_playground_runs_a_web_export_beside_the_server_token_for_token(runs, cli, tmp_path):
    """`genlab serve` of a web export: the playground writes the same prompt greedily on the server and, with the
    exported model, in the browser; the two texts are identical, past the context window too."""
    chromium = require_tools("chromium", "npm")["chromium"]
    from genlab.server import build
    from playwright.sync_api import sync_playwright
    from test_serve import Server

    site = tmp_path / "site"
    assert cli("export", runs["char"], "--format", "web", "--out", site).returncode == 0
    s = Server(build([str(site)], device="cpu"))
    try:
        import httpx

        assert httpx.get(s.url + "/v1/models").json()["data"][0]["genlab_web"] == "/web/site/"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(s.url + "/")
            page.wait_for_function("document.querySelectorAll('#model option').length == 1")
            page.check("#browser")
            page.fill("#prompt", "The cat")
            page.eval_on_selector("#max_tokens", "(e) => { e.value = 45; }")  # past the context window (32)
            page.click("#generate")
            page.wait_for_function("document.querySelector('#compare').textContent.startsWith('identical')"
                                   " || document.querySelector('#compare').textContent.startsWith('they differ')", timeout=60_000)
            verdict, server_text, browser_text = (page.text_content(x) for x in ("#compare", "#output", "#browser-output"))
            browser.close()
    finally:
        s.stop()
    assert errors == [] and verdict.startswith("identical"), (verdict, server_text, browser_text)
    expected = genlab.load(runs["char"], device="cpu").generate("The cat", max_new_tokens=45, temperature=0, stop=[])[0].text
    assert server_text == browser_text == "The cat" + expected
