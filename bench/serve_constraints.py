"""What logprobs and structured output cost a server under load, and whether every answer holds.

    python bench/serve_constraints.py [--train-seconds 90] [--seconds 15] [--clients 1,16]

Trains a 4x128 char GPT on python-docs (offline; its docstrings hold braces and quotes, so it can spell
JSON) for --train-seconds, starts one real server (separate process, one torch thread, continuous
batching), and for each client count runs three kinds of request back to back for --seconds each: plain
(48 new tokens, temperature 0.8), the same with `logprobs: 5`, and the same under a JSON schema
(`response_format`, an object with a string, an integer and a boolean). Records answers' tokens/s (from
`usage`) relative to plain decoding and the share of schema answers that parse and validate (jsonschema).
Writes bench/results/serve_constraints.json. Targets (issue "Serve beyond the anchors"): at most 20 %
slower than plain at 1 and 16 clients; 100 % valid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

import httpx

from serve_load import start_server

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "serve_constraints.json"
TOKENS = 48
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "count": {"type": "integer"}, "ok": {"type": "boolean"}},
          "required": ["name", "count", "ok"]}
KINDS = {"plain": {}, "logprobs": {"logprobs": 5},
         "json schema": {"response_format": {"type": "json_schema", "json_schema": {"name": "thing", "schema": SCHEMA}}}}


async def client(http, url: str, extra: dict, until: float, seed: int, stats: dict) -> None:
    import jsonschema

    k = 0
    while time.perf_counter() < until:
        body = {"model": "run", "prompt": "", "max_tokens": TOKENS, "temperature": 0.8, "seed": seed * 100_000 + k, **extra}
        r = await http.post(url + "/v1/completions", json=body)
        k += 1
        if r.status_code != 200:
            stats["errors"] += 1
            continue
        answer = r.json()
        if time.perf_counter() <= until:
            stats["tokens"] += answer["usage"]["completion_tokens"]
        if "response_format" in extra:
            try:
                jsonschema.validate(json.loads(answer["choices"][0]["text"]), SCHEMA)
                stats["valid"] += 1
            except (ValueError, jsonschema.ValidationError):
                stats["invalid"] += 1


async def load(url: str, extra: dict, clients: int, seconds: float) -> dict:
    stats = {"tokens": 0, "errors": 0, "valid": 0, "invalid": 0}
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=clients + 4)) as http:
        until = time.perf_counter() + seconds
        await asyncio.gather(*(client(http, url, extra, until, i, stats) for i in range(clients)))
    return {"tokens_per_s": stats["tokens"] / seconds, **stats}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-seconds", type=float, default=90.0)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--clients", default="1,16")
    p.add_argument("--out", default="/tmp/genlab-bench-serve-constraints")
    args = p.parse_args()
    import genlab

    load_avg = list(os.getloadavg())
    run = genlab.train({"task": "text", "out": str(Path(args.out) / "run"), "data": {"source": "python-docs"},
                        "model": {"name": "gpt", "n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 128},
                        "train": {"max_steps": 100_000, "max_time": args.train_seconds, "batch_size": 32, "lr": 2e-3,
                                  "eval_interval": 1000, "progress": False}}, progress=False, overwrite=True)
    proc, url = start_server(run.path, 64)
    rows = []
    try:
        for clients in map(int, args.clients.split(",")):
            for kind, extra in KINDS.items():
                rows.append({"clients": clients, "kind": kind, **asyncio.run(load(url, extra, clients, args.seconds))})
                print(rows[-1], flush=True)
    finally:
        proc.kill()
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_avg_at_start": load_avg,
               "command": f"python bench/serve_constraints.py --train-seconds {args.train_seconds:g} --seconds {args.seconds:g}",
               "model": f"4x128 char GPT, python-docs, {run.results['step']} steps", "new_tokens": TOKENS, "schema": SCHEMA,
               "rows": rows}
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
