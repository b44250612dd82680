import contextlib
import os
import random
from pathlib import Path

import pytest

# pytest runs with -n 2 on 2 cores: one thread per worker. The CLI's `--threads auto` reads this too, so
# commands run in process do not oversubscribe the machine.
os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _isolated_cache(_session_cache, monkeypatch):
    """The tests share one dataset cache per worker (built datasets and feature extractors are
    deterministic, and building python-docs or digits features once saves minutes), never the user's;
    a test of caching itself points GENLAB_CACHE at a folder of its own."""
    monkeypatch.setenv("GENLAB_CACHE", str(_session_cache))


@pytest.fixture(autouse=True)
def _two_threads():
    import torch

    # pytest runs with -n 2 on 2 cores: one thread per worker avoids oversubscription.
    torch.set_num_threads(1)


def make_corpus(n_chars: int = 20_000, seed: int = 0) -> str:
    """A small, learnable English-like corpus: a few words in repeating patterns."""
    rng = random.Random(seed)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "it", "was", "red", "big"]
    lines = []
    size = 0
    while size < n_chars:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(4, 9))).capitalize() + "."
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines) + "\n"


@pytest.fixture
def corpus_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(make_corpus())
    return path


def tiny_config(corpus, out, **train):
    """A run config small enough to train in a second or two."""
    return {
        "task": "text",
        "out": str(out),
        "data": {"source": str(corpus)},
        "model": {"name": "gpt", "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32},
        "train": {"max_steps": 30, "batch_size": 8, "lr": 3e-3, "warmup_steps": 5, "eval_interval": 15,
                  "checkpoint_interval": 15, "eval_batches": 4, "sample_tokens": 20, "progress": False, **train},
    }


class CliResult:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def cli(monkeypatch, capsys):
    """`genlab ARGS...` through the CLI's own main(), in this process (no interpreter start per call);
    the tests that need the installed entry point itself start a real process."""
    import sys

    import genlab.cli as cli_module
    import genlab.cli.root as cli_root

    def run(*args, cwd=None, env=None) -> CliResult:
        capsys.readouterr()
        with monkeypatch.context() as m:
            m.setattr(sys, "argv", ["genlab", *map(str, args)])
            m.setattr(cli_root, "_debug", False)
            m.delenv("GENLAB_DEBUG", raising=False)
            for key, value in (env or {}).items():
                m.setenv(key, value)
            if cwd is not None:
                m.chdir(cwd)
            try:
                cli_module.main()
                status = 0
            except SystemExit as e:
                status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out = capsys.readouterr()
        return CliResult(status, out.out, out.err)

    return run


def require_tools(*tools: str) -> dict[str, str]:
    """{tool: path} of system tools a test needs (chromium, npm, fluidsynth): on CI (.ci/run installs them) a
    missing one fails the test; elsewhere it skips, saying which."""
    import os
    import shutil

    names = {"chromium": ("chromium", "chromium-browser")}
    found = {t: next((p for p in map(shutil.which, names.get(t, (t,))) if p), None) for t in tools}
    missing = [t for t, path in found.items() if path is None]
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{', '.join(missing)} missing on CI (.ci/run installs them with apt-get)")
        pytest.skip(f"needs {', '.join(missing)} (apt-get install {' '.join(missing)})")
    return found


@contextlib.contextmanager
def serving(run, env: dict | None = None, cwd=None):
    """`genlab serve RUN` as a user starts it, in its own process on a free port; yields its base URL once /health
    answers, and stops it afterwards."""
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).with_name("genlab")), "serve", str(run), "--port", str(port),
                               "--threads", "1"], env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("the server did not start: " + server.stderr.read()[-1000:])
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)
