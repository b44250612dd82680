"""A long fuzz of `genlab serve`: schemathesis cases from the server's OpenAPI description against a real server.

    python bench/serve_fuzz.py [--examples 2000]

Trains a tiny char GPT, serves it with a key on loopback, and runs `--examples` cases per endpoint
(completions, chat, embeddings, models) through the suite's fuzz (tests/test_serve_hostile.py). Records the
cases, the time and every finding (a 5xx, a hang, a dropped connection) in bench/results/serve_fuzz.json.
The target: no finding, and /health still answering at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import make_corpus, tiny_config  # noqa: E402
from test_serve import Server  # noqa: E402
from test_serve_hostile import FUZZED, fuzz  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "serve_fuzz.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--examples", type=int, default=2000, help="cases per endpoint")
    args = p.parse_args()
    import os

    import genlab
    from genlab.server import build

    load_avg = list(os.getloadavg())

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text(make_corpus() + "".join(chr(c) for c in range(32, 127)) + "\n")
        run = genlab.train(tiny_config(corpus, Path(tmp) / "fuzz", max_steps=20), progress=False).path
        server = Server(build([str(run)], api_key="fuzz", device="cpu", constraint_timeout=2.0))
        try:
            start = time.perf_counter()
            statuses: dict = {}
            failures = fuzz(server.url, args.examples, headers={"Authorization": "Bearer fuzz"}, statuses=statuses)
            took = time.perf_counter() - start
            alive = httpx.get(server.url + "/health", timeout=5).status_code == 200
        finally:
            server.stop()
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_avg_at_start": load_avg,
              "command": " ".join(["python"] + sys.argv),
              "endpoints": FUZZED, "examples_per_endpoint": args.examples, "seconds": round(took, 1),
              "statuses": {str(k): v for k, v in sorted(statuses.items())},
              "findings": [list(map(str, f)) for f in failures], "health_after": alive}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
