"""One GPT run in every form it exports to, measured side by side: size, decoding speed, val loss.

    python bench/export_formats.py [--data ../shared/data/tinyshakespeare.txt] [--seconds 120]

Trains recipes/tinyshakespeare-gpt.toml for --seconds, exports it with `genlab export --format onnx` and
`--format int8`, and measures in one process, one torch/onnxruntime thread each: PyTorch fp32, PyTorch int8
(torch's dynamic quantization of the Linear layers; not an export format yet), ONNX fp32 and ONNX int8 —
file size, tokens/s decoding 128 new tokens at batch 1 and 8 through genlab's step engine, and val loss
over the whole val split. Writes bench/results/export_formats.json. Targets (issue "Ship a model"): int8 at
most 30 % of the fp32 size, faster at batch 1, within 0.02 nats; ONNX fp32 at least as fast as PyTorch.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "export_formats.json"
NEW_TOKENS = 128


def decode_rate(model, prompt: list[int], batch: int) -> float:
    from genlab.sampling.engine import Decoding, Engine, Request, decode

    best = float("inf")
    for _ in range(2):
        engine = Engine(model)
        start = time.perf_counter()
        decode(engine, [Request(prompt, Decoding(max_new_tokens=NEW_TOKENS, temperature=1.0), seed=i) for i in range(batch)])
        best = min(best, time.perf_counter() - start)
    return batch * NEW_TOKENS / best


def main() -> None:
    import genlab
    from genlab.config import build_config
    from genlab.datasets.token_store import TokenStore
    from genlab.export import export
    from genlab.export.onnx import OnnxGPT
    from genlab.tasks.sequence import evaluate_tokens

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"))
    p.add_argument("--seconds", type=float, default=120.0)
    p.add_argument("--out", default="/tmp/genlab-bench-export")
    args = p.parse_args()
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    load_avg = list(os.getloadavg())
    out = Path(args.out)
    config = build_config(ROOT / "recipes" / "tinyshakespeare-gpt.toml", {"data": args.data, "out": str(out / "run")},
                          [f"train.max_time={args.seconds}", "train.progress=false"])
    run = genlab.train(config, progress=False, overwrite=True)
    for fmt in ("onnx", "int8"):
        export(run.path, fmt, out / fmt, progress=False)
    gen = genlab.load(run.path, device="cpu")
    model = gen.model.eval()
    quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    buffer = io.BytesIO()
    torch.save(quantized.state_dict(), buffer)  # size only: packed int8 weights have no safetensors form
    val = TokenStore(run.path / "data").split("val")
    prompt = gen.encode_prompt("ROMEO:")
    forms = {
        "pytorch fp32": (model, (run.path / "model.safetensors").stat().st_size),
        "pytorch int8 (dynamic)": (quantized, buffer.tell()),
        "onnx fp32": (OnnxGPT(out / "onnx" / "model.onnx", config.model, model.vocab_size), (out / "onnx" / "model.onnx").stat().st_size),
        "onnx int8": (OnnxGPT(out / "int8" / "model.onnx", config.model, model.vocab_size), (out / "int8" / "model.onnx").stat().st_size),
    }
    rows = []
    for name, (m, size) in forms.items():
        loss = evaluate_tokens(m, val, gen.tokenizer.unit_lengths(), config.model.block_size, "cpu")["loss"]
        row = {"form": name, "bytes": size, "val_loss": loss,
               "batch1_tokens_per_s": decode_rate(m, prompt, 1), "batch8_tokens_per_s": decode_rate(m, prompt, 8)}
        print(row, flush=True)
        rows.append(row)
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_avg_at_start": load_avg,
               "command": f"python bench/export_formats.py --seconds {args.seconds:g}", "threads": 1,
               "model": f"recipes/tinyshakespeare-gpt.toml trained {run.results['step']} steps ({args.seconds:g} s)",
               "new_tokens": NEW_TOKENS, "rows": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
