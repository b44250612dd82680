"""`hf:` models: a local Hugging Face causal LM behind genlab's Generator, sampled, evaluated and fine-tuned."""

import json

import pytest
import torch

# transformers and peft are test dependencies (pyproject's `test` extra): a missing one fails, never skips.
import transformers

from genlab.api import load
from genlab.core.errors import GenlabError
from genlab.tasks.hf import HFGenerator

CODE = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n\n\n"


def save_tiny_model(folder, seed=0):
    """A random 2-layer GPT-2 with a byte-level BPE tokenizer trained on a line of code, saved as safetensors."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.train_from_iterator([CODE] * 20, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"], show_progress=False,
                                                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=hf, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0)
    GPT2LMHeadModel(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny-gpt2"))


def test_loads_offline_and_decodes_exactly_like_transformers(tiny):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gen = load(f"hf:{tiny}", device="cpu")
    assert isinstance(gen, HFGenerator)
    prompt = "def add(a, b):\n"
    (ours,) = gen.generate(prompt, temperature=0, max_new_tokens=12, stop=[])
    tok = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny)
    ids = tok(prompt, return_tensors="pt").input_ids
    theirs = model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=0)
    expected = tok.decode(theirs[0, ids.shape[1]:], skip_special_tokens=False)
    assert ours.text == expected.split("<|endoftext|>")[0]  # end-of-text also ends our generation
    # The KV-cache path and the recompute-everything path agree, sampled with a seed.
    (cached,) = gen.generate(prompt, temperature=1.0, max_new_tokens=20, seed=3, stop=[])
    assert cached == gen.generate(prompt, temperature=1.0, max_new_tokens=20, seed=3, stop=[], use_cache=False)[0]
    assert "".join(gen.stream(prompt, temperature=1.0, max_new_tokens=20, seed=3, stop=[])) == cached.text


def test_missing_folder_and_pickle_only_weights_are_one_line_errors(tiny, tmp_path):
    with pytest.raises(GenlabError, match=r"no such model folder"):
        load(f"hf:{tmp_path / 'nothing'}")
    legacy = tmp_path / "legacy"
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(tiny).save_pretrained(legacy, safe_serialization=False)
    for f in tiny.glob("tok*"):
        (legacy / f.name).write_bytes(f.read_bytes())
    if (legacy / "model.safetensors").exists():  # newer transformers always write safetensors
        (legacy / "model.safetensors").unlink()
        torch.save(AutoModelForCausalLM.from_pretrained(tiny).state_dict(), legacy / "pytorch_model.bin")
    with pytest.raises(GenlabError, match=r"^hf:.*legacy: cannot load a causal LM with safetensors weights"):
        load(f"hf:{legacy}")


def test_a_config_that_does_not_fit_its_weights_is_one_line_and_says_so(tiny, tmp_path, cli):
    """A hostile or broken config.json: other sizes than the weights printed transformers' table of every tensor
    and then an internal error; n_head 0 divided by zero."""
    import shutil

    for name, change, message in [("wide", {"n_embd": 1_000_000, "n_layer": 1000}, "config.json does not fit the weights"),
                                  ("headless", {"n_head": 0}, "integer division or modulo by zero")]:
        folder = tmp_path / name
        shutil.copytree(tiny, folder)
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, **change}))
        r = cli("sample", f"hf:{folder}", "--prompt", "def f():")
        assert r.returncode == 1 and r.stderr == (f"error: hf:{folder}: cannot load a causal LM with safetensors weights "
                                                  f"({message}{': tensors of other shapes, or missing' if name == 'wide' else ''})\n"), r.stderr


def test_cli_sample_and_eval_code_treat_it_like_a_run(tiny, tmp_path):
    from typer.testing import CliRunner

    from genlab.cli import _register, app

    _register()
    runner = CliRunner()
    r = runner.invoke(app, ["sample", f"hf:{tiny}", "--prompt", "def hello_world():", "--seed", "0", "--max-new-tokens", "8"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("def hello_world():")
    problems = tmp_path / "p.jsonl"
    problems.write_text(json.dumps({"task_id": "T/0", "prompt": "def one():\n", "entry_point": "one",
                                    "canonical_solution": "    return 1\n", "test": "def check(f):\n    assert f() == 1\n"}) + "\n")
    r = runner.invoke(app, ["eval-code", f"hf:{tiny}", "--problems", str(problems), "--k", "1,2", "--n", "2",
                            "--max-new-tokens", "10", "--out", str(tmp_path / "res"), "--quiet"])
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "res" / "summary.json").read_text())
    assert summary["candidates"] == 2 and summary["pass@1"] == 0.0 and summary["model"] == str(tiny)


def test_finetune_hf_learns_the_code_base_and_loads_back(tiny, tmp_path):
    from typer.testing import CliRunner

    from genlab.cli import _register, app

    project = tmp_path / "project"
    project.mkdir()
    (project / "ops.py").write_text(CODE * 30)
    _register()
    out = tmp_path / "tuned"
    r = CliRunner().invoke(app, ["finetune-hf", f"hf:{tiny}", "--data", str(project), "--out", str(out), "--max-steps", "30",
                                 "--lr", "3e-3", "--batch-size", "8", "--block-size", "32", "--set", "train.warmup_steps=2",
                                 "--set", "train.eval_interval=1000", "--quiet"])
    assert r.exit_code == 0, r.output
    assert (out / "model.safetensors").is_file() and (out / "training" / "metrics.jsonl").is_file()
    before = load(f"hf:{tiny}").evaluate(data=str(project), samples=1, sample_tokens=4, functions=1)
    after = load(f"hf:{out}").evaluate(data=str(project), samples=1, sample_tokens=4, functions=1)
    assert after["loss"] < before["loss"] - 1.0 and "bits_per_token" in after
    with pytest.raises(GenlabError, match="no held-out split"):
        load(f"hf:{out}").evaluate()


def test_lora_fine_tuning_trains_few_parameters_and_saves_a_plain_model(tiny, tmp_path):
    from genlab.core.config import validate_config
    from genlab.tasks.hf import finetune

    project = tmp_path / "project"
    project.mkdir()
    (project / "ops.py").write_text(CODE * 30)
    config = validate_config({"task": "code", "out": str(tmp_path / "lora"), "data": {"source": str(project)},
                              "train": {"max_steps": 40, "lr": 3e-2, "batch_size": 8, "warmup_steps": 2, "eval_interval": 1000,
                                        "progress": False}})
    out = finetune(str(tiny), config, block_size=32, lora_rank=4, progress=False)
    results = json.loads((out / "training" / "results.json").read_text())
    total = sum(p.numel() for p in transformers.AutoModelForCausalLM.from_pretrained(tiny).parameters())
    assert 0 < results["trainable_parameters"] < total / 5
    assert not list(out.glob("adapter*"))  # merged: a plain model that loads without peft
    before = load(f"hf:{tiny}").evaluate(data=str(project), samples=1, sample_tokens=4, functions=1)["loss"]
    after = load(f"hf:{out}").evaluate(data=str(project), samples=1, sample_tokens=4, functions=1)["loss"]
    assert after < before - 0.2  # adapters only (embeddings and the tied head stay random): a smaller gain than full tuning


def test_without_transformers_hf_is_a_one_line_error(tmp_path, cli, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # as if it were not installed
    r = cli("sample", f"hf:{tmp_path}", "--prompt", "x")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f"error: hf:{tmp_path}: Hugging Face models need the `transformers` package (pip install 'genlab[hf]')"]


def test_a_served_hf_model_chats_through_its_own_template(tiny, tmp_path):
    # A copy of the tiny model whose tokenizer carries a chat template: the server must prompt with it.
    import shutil

    from transformers import AutoTokenizer

    from genlab.server import build
    from test_serve import Server

    folder = tmp_path / "chatty"
    shutil.copytree(tiny, folder)
    tok = AutoTokenizer.from_pretrained(folder)
    tok.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}<assistant>"
    tok.save_pretrained(folder)
    s = Server(build([f"hf:{folder}"], device="cpu"))
    try:
        import httpx

        r = httpx.post(s.url + "/v1/chat/completions", timeout=60,
                       json={"model": "chatty", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "seed": 0})
        assert r.status_code == 200, r.text
        expected = len(tok.encode("<user>hi\n<assistant>", add_special_tokens=False))
        assert r.json()["usage"]["prompt_tokens"] == expected  # the template's prompt, not the plain one
    finally:
        s.stop()
