"""Every recipe in recipes/ loads, validates, and trains for 2 steps (on a small local corpus of the
same kind in place of its dataset, which may need a download or minutes of tokenizing)."""

from pathlib import Path

import pytest

import genlab
from genlab.core.config import build_config
from conftest import make_corpus

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").rglob("*.toml"))


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpora")
    (root / "prose.txt").write_text(make_corpus(30_000))
    code = root / "code"
    code.mkdir()
    for i in range(6):
        (code / f"m{i}.py").write_text("".join(f"def f{j}(x):\n    return x * {j} + {i}\n\n\n" for j in range(60)))
    return root


def test_there_are_recipes():
    assert len(RECIPES) >= 10


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_validates_and_trains_two_steps(recipe, corpora, tmp_path):
    config = build_config(recipe)
    assert config.train.max_time or config.train.max_steps  # a budget, as the header comment says
    data = corpora / ("code" if config.task == "code" or config.tokenizer.kind == "code" else "prose.txt")
    tiny = build_config(recipe, {"data": str(data), "out": str(tmp_path / "run"), "max_steps": 2},
                        ["train.eval_batches=1", "train.sample_tokens=4", "train.batch_size=4"])
    run = genlab.train(tiny, progress=False)
    assert run.results["step"] in (0, 2)  # the n-gram is fitted (step 0), the rest trained
    assert (run.path / "model.safetensors").is_file()
