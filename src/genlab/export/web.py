"""A GPT run (character or byte-level BPE tokens) as a static web page that generates text in the browser:
`--format web`.

The folder holds index.html (the page, its tokenizer and its sampler, written here), model.onnx (export/onnx.py:
the GPT with its key/value cache; with config.toml and tokenizer.json `genlab sample DIR` runs it too),
vocab.json (the tokens, and for BPE the merges the page encodes prompts with), and onnxruntime-web's
JavaScript and WebAssembly files, taken from
the npm package at export time (`npm pack onnxruntime-web@ORT_WEB_VERSION`) or from `--ort-web DIR`. The
page fetches nothing else: serve the folder with any static file server (browsers refuse WebAssembly from
file:// pages) and open it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from genlab.core.errors import GenlabError
from genlab.export.onnx import export_onnx

ORT_WEB_VERSION = "1.20.1"
ORT_FILES = ["ort.wasm.min.js", "ort-wasm-simd-threaded.wasm", "ort-wasm-simd-threaded.mjs"]
PAGE = Path(__file__).with_name("web_page.html")
GENERATOR = Path(__file__).with_name("web_generator.js")  # the tokenizer and sampler; the serve playground loads it too


def ort_web_files(dest: Path, ort_web: Path | None) -> None:
    """Copy onnxruntime-web's files into dest: from `ort_web` (a folder holding them, or an npm package's
    dist/), else from the npm package fetched with `npm pack` (npm's cache or registry, at export time)."""
    if ort_web is not None:
        for name in ORT_FILES:
            found = next((p for p in (Path(ort_web) / name, Path(ort_web) / "dist" / name) if p.is_file()), None)
            if found is None:
                raise GenlabError(f"--ort-web {ort_web}: no {name} there (give onnxruntime-web's dist/ folder)")
            shutil.copyfile(found, dest / name)
        return
    npm = shutil.which("npm")
    if npm is None:
        raise GenlabError("--format web needs onnxruntime-web: install npm, or pass --ort-web DIR (its dist/ folder)")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run([npm, "pack", f"onnxruntime-web@{ORT_WEB_VERSION}", "--silent"], cwd=tmp, check=True,
                           capture_output=True, timeout=600)
        except (subprocess.SubprocessError, OSError) as e:
            raise GenlabError(f"--format web: `npm pack onnxruntime-web@{ORT_WEB_VERSION}` failed ({type(e).__name__}); "
                              "pass --ort-web DIR") from None
        (archive,) = Path(tmp).glob("*.tgz")
        with tarfile.open(archive) as tar:
            for name in ORT_FILES:
                member = tar.extractfile(f"package/dist/{name}")
                (dest / name).write_bytes(member.read())


def page_tokenizer(tokenizer) -> dict:
    """What index.html needs to encode and decode: the tokens by id, and for BPE the merges in rank order."""
    if tokenizer.kind == "char":
        return {"kind": "char", "tokens": list(tokenizer.chars)}
    if tokenizer.kind != "bpe":  # the code tokenizer splits layout with a Python regex first; no page port yet
        raise GenlabError(f"--format web: character and BPE runs only, not a {tokenizer.kind!r} tokenizer")
    model = tokenizer.to_json()["hf"]["model"]
    tokens = [""] * tokenizer.vocab_size
    for token, i in model["vocab"].items():
        tokens[i] = token
    merges = [m.split(" ") if isinstance(m, str) else list(m) for m in model["merges"]]
    return {"kind": "bpe", "tokens": tokens, "merges": merges}


def export_web(generator, work: Path, ort_web: Path | None = None) -> dict:
    vocab = page_tokenizer(generator.tokenizer)
    report = export_onnx(generator, work)  # model.onnx (checked against PyTorch), config.toml, tokenizer.json
    c, s = generator.config.model, generator.config.sample
    (work / "vocab.json").write_text(json.dumps({
        **vocab, "empty_prompt": generator.encode_prompt(""), "block_size": c.block_size, "n_layer": c.n_layer,
        "n_head": c.n_head, "head_size": c.n_embd // c.n_head, "temperature": s.temperature, "top_k": s.top_k,
        "prompt": s.prompt}))
    shutil.copyfile(PAGE, work / "index.html")
    shutil.copyfile(GENERATOR, work / GENERATOR.name)
    ort_web_files(work, ort_web)
    return {**report, "onnxruntime_web": "local " + str(ort_web) if ort_web else ORT_WEB_VERSION}
