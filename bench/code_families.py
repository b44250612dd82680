"""Every sequence family trained on `python-stdlib` at the same budget; how well each writes Python.

For each family: train for --steps optimizer steps, the same number of
training tokens for all (same data, code tokenizer, batch, context and
schedule; the n-gram model is counted, not trained). A step budget rather
than a wall-clock one, because the machine is shared and its speed varies
from minute to minute; train seconds are recorded beside it. Then
measure val bits per byte over the whole val split and the syntax-valid rate
(`ast.parse`) of 100 functions sampled from `def ` (temperature 0.8, top-k 50,
at most 256 tokens, stopping where the function ends).

First, the tokenizer: the code tokenizer of the first run round-trips every
file of the standard library (decode(encode(x)) == x), timed, and its bytes per
token is compared with plain byte-level BPE at the same vocabulary.

    python bench/code_families.py --families gpt --steps 100    # one family per invocation keeps each under ~10 min
    python bench/code_families.py --families gpt --steps 20      # a quick look

Writes bench/results/code_families.json (families merge across invocations
of the same --steps).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from genlab.api import load, train
from genlab.core.config import TokenizerConfig, validate_config
from genlab.datasets.named import stdlib_files
from genlab.metrics.code import is_valid_python
from genlab.core.runs import RunDir
from genlab.core.files import atomic_write_json
from genlab.tasks.sequence import evaluate_tokens
from genlab.datasets.token_store import TokenStore
from genlab.tokenizers import load_tokenizer
from genlab.tokenizers.bpe import BPETokenizer

RESULTS = Path(__file__).parent / "results" / "code_families.json"
BLOCK = 128
MODELS = {  # about 1 M parameters each (besides embeddings), like bench/music_families.py
    "gpt": {"name": "gpt", "n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": BLOCK},
    "lstm": {"name": "lstm", "n_layer": 2, "n_embd": 256, "block_size": BLOCK, "dropout": 0.1},
    "gru": {"name": "gru", "n_layer": 2, "n_embd": 256, "block_size": BLOCK, "dropout": 0.1},
    "fnet": {"name": "fnet", "n_layer": 4, "n_embd": 128, "block_size": BLOCK},
    "ngram": {"name": "ngram", "order": 3, "block_size": BLOCK},
}
VOCAB = 4096
FUNCTIONS, FUNCTION_TOKENS = 100, 256


def run_family(family: str, steps: int, out: Path) -> dict:
    tree = {
        "task": "code", "out": str(out / family), "data": {"source": "python-stdlib"},
        "tokenizer": {"kind": "code", "vocab_size": VOCAB}, "model": MODELS[family],
        "train": {"max_steps": steps, "batch_size": 16, "lr": 2e-3, "warmup_steps": 50,
                  "eval_interval": 100_000, "checkpoint_interval": 100_000, "eval_batches": 10, "progress": False},
        "sample": {"temperature": 0.8, "top_k": 50, "top_p": 1.0},
    }
    t0 = time.perf_counter()
    run = train(validate_config(tree), progress=False, overwrite=True)
    wall = time.perf_counter() - t0
    gen = load(run.path, device="cpu")
    val = TokenStore(RunDir(run.path).data).split("val")
    loss = evaluate_tokens(gen.model, val, gen.tokenizer.unit_lengths(), BLOCK, gen.device)
    t1 = time.perf_counter()
    functions = gen.sample_functions(FUNCTIONS, seed=0, max_new_tokens=FUNCTION_TOKENS)
    sample_s = time.perf_counter() - t1
    valid = [f for f in functions if is_valid_python(f)]
    return {
        "family": family,
        "params": sum(p.numel() for p in gen.model.parameters()),
        "steps": run.results["step"],
        "train_seconds": run.results["elapsed"],
        "wall_seconds_with_tokenizing": round(wall, 1),
        "val_bits_per_byte": loss["bits_per_unit"],
        "val_tokens": loss["tokens"],
        "syntax_valid": len(valid) / len(functions),
        "sample_seconds": round(sample_s, 1),
        "example_valid_function": min(valid, key=len) if valid else None,
    }


def tokenizer_check(run_dir: Path) -> dict:
    """Exact round trip of every stdlib file through the run's code tokenizer, and compression against plain BPE."""
    code = load_tokenizer(RunDir(run_dir).tokenizer)
    files = stdlib_files()
    texts = [p.read_text(encoding="utf-8") for p in files]
    t0 = time.perf_counter()
    ids = [e.ids for e in code.hf.encode_batch(texts)]
    broken = [str(p) for p, x, y in zip(files, texts, code.hf.decode_batch(ids, skip_special_tokens=False)) if x != y]
    seconds = time.perf_counter() - t0
    plain = BPETokenizer.train(texts, TokenizerConfig(vocab_size=VOCAB))
    n_bytes = sum(len(x.encode()) for x in texts)
    plain_tokens = sum(len(e.ids) for e in plain.hf.encode_batch(texts))
    return {"files": len(files), "bytes": n_bytes, "round_trip_failures": broken, "round_trip_seconds": round(seconds, 1),
            "code_bytes_per_token": n_bytes / sum(map(len, ids)), "bpe_bytes_per_token": n_bytes / plain_tokens, "vocab_size": VOCAB}


def main() -> None:
    load_at_start = list(os.getloadavg())  # stated beside the figures: a busy machine understates them
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default="gpt,lstm,gru,fnet,ngram")
    parser.add_argument("--steps", type=int, default=100, help="training steps per family (16 x 128 tokens each)")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    saved = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    same = saved.get("steps_per_family") == args.steps
    results = saved.get("results", {}) if same else {}
    tokenizer = saved.get("tokenizer") if same else None
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families.split(","):
            r = run_family(family, args.steps, Path(tmp))
            r["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            r["load_avg_at_start"] = load_at_start
            print(json.dumps(r), flush=True)
            results[family] = r
            if tokenizer is None:
                tokenizer = tokenizer_check(Path(tmp) / family)
                print(json.dumps(tokenizer), flush=True)
            atomic_write_json(RESULTS, {
                "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared), torch {torch.__version__}",
                "steps_per_family": args.steps, "tokens_per_step": 16 * BLOCK, "functions": FUNCTIONS, "function_tokens": FUNCTION_TOKENS,
                "tokenizer": tokenizer, "results": results,
            })
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
