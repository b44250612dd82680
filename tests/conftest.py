import os
import random

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own dataset cache, so nothing leaks between tests or from the user's cache."""
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path_factory.mktemp("cache")))


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
