"""The sequence model zoo: GRU, causal FNet, Kneser-Ney n-gram, cached sampling, `genlab compare`."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict

import numpy as np
import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.models.fnet import FNet, FNetConfig, causal_fft_conv, causal_toeplitz_conv
from genlab.models.gpt import GPT, GPTConfig
from genlab.models.ngram import NGram, NGramConfig
from genlab.models.rnn import RNN, RNNConfig
from genlab.models.wavenet import WaveNet, WaveNetConfig
from genlab.core.generators import SamplingParams
from genlab.sampling.engine import Engine, Request, decode

V = 11


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny(family: str, block: int = 32):
    if family in ("gpt", "gpt-rope"):
        return GPT(GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=block, rope=family == "gpt-rope"), V)
    if family in ("lstm", "gru", "rnn"):
        return RNN(RNNConfig(name=family, n_layer=2, n_embd=16, dropout=0.0), V)
    if family in ("fnet", "fnet-fourier"):
        return FNet(FNetConfig(n_layer=2, n_embd=16, block_size=block, mixing="fourier" if family == "fnet-fourier" else "learned"), V)
    if family == "wavenet":  # a receptive field of 15: decoding past it, the uncached path recomputes a window
        return WaveNet(WaveNetConfig(layers_per_stack=3, residual_channels=8, skip_channels=8), V)
    model = NGram(NGramConfig(order=4), V)
    model.fit(np.random.default_rng(0).integers(0, V, 3000))
    return model


FAMILIES = ["gpt", "gpt-rope", "lstm", "gru", "rnn", "fnet", "fnet-fourier", "ngram", "wavenet"]


def decode_rows(model, prompt: torch.Tensor, d: SamplingParams, use_cache: bool, seed: int = 0, continuous: bool = False) -> torch.Tensor:
    """prompt (B, T0) -> the (B, n) tokens the step engine generates, row i with seed + i."""
    engine = Engine(model, use_cache=use_cache, continuous=continuous)
    slots = decode(engine, [Request(row, d, seed + i) for i, row in enumerate(prompt.tolist())])
    return torch.tensor([engine.tokens(s) for s in slots])


def greedy(model, prompt: torch.Tensor, n: int, use_cache: bool) -> torch.Tensor:
    return decode_rows(model, prompt, SamplingParams(max_new_tokens=n, temperature=0.0), use_cache)


# ---- sampling: cache, state, batches ---------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_with_cache_equals_greedy_recomputing_the_context(family):
    model = tiny(family)
    prompt = torch.randint(0, V, (2, 5))
    cached = greedy(model, prompt, 27, use_cache=True)  # 5 + 27 = block_size: the cache never refills
    assert torch.equal(cached, greedy(model, prompt, 27, use_cache=False))


@pytest.mark.parametrize("family", FAMILIES)
def test_step_by_step_logits_equal_the_full_forward(family):
    model = tiny(family).eval()
    idx = torch.randint(0, V, (3, 20))
    with torch.no_grad():
        full = model(idx)
        state = model.init_state(3)
        first, state = model.step(idx[:, :7], state)
        rest = []
        for t in range(7, 20):
            logits, state = model.step(idx[:, t : t + 1], state)
            rest.append(logits)
    torch.testing.assert_close(torch.cat([first, *rest], dim=1), full, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_one_token_prompt_decodes_like_recomputing(family):
    model = tiny(family)
    prompt = torch.tensor([[3]])
    assert torch.equal(greedy(model, prompt, 10, use_cache=True), greedy(model, prompt, 10, use_cache=False))


@pytest.mark.parametrize("family", ["gpt", "fnet", "gru", "ngram"])
def test_a_batch_of_prompts_decodes_as_each_prompt_alone(family):
    model = tiny(family)
    prompts = torch.randint(0, V, (3, 4))
    together = greedy(model, prompts, 12, use_cache=True)
    for row in range(3):
        assert torch.equal(together[row], greedy(model, prompts[row : row + 1], 12, use_cache=True)[0])


@pytest.mark.parametrize("family", ["gpt", "gpt-rope", "fnet", "fnet-fourier"])
def test_sampling_past_the_context_window_equals_recomputing_it(family):
    # Two and a half windows: past block_size each token sees exactly the last 8, cached or not.
    model = tiny(family, block=8)
    prompt = torch.randint(0, V, (2, 3))
    cached = greedy(model, prompt, 20, use_cache=True)
    assert torch.equal(cached, greedy(model, prompt, 20, use_cache=False))
    seeded = lambda cache, continuous=False: decode_rows(model, prompt, SamplingParams(max_new_tokens=20, temperature=1.0),  # noqa: E731
                                                         cache, seed=3, continuous=continuous)
    assert torch.equal(seeded(True), seeded(False))  # sampling too, with the same seed
    assert torch.equal(seeded(True, continuous=True), seeded(False))  # and rows of one shared cache (the server's)


# ---- GRU ---------------------------------------------------------------------------------


def test_gru_has_three_quarters_of_the_lstm_recurrent_parameters():
    lstm, gru = RNN(RNNConfig(name="lstm", n_embd=64), V), RNN(RNNConfig(name="gru", n_embd=64), V)
    count = lambda m: sum(p.numel() for p in m.rnn.parameters())  # noqa: E731
    assert count(gru) * 4 == count(lstm) * 3
    assert gru.num_params() < lstm.num_params()


# ---- FNet ----------------------------------------------------------------------------------


@pytest.mark.parametrize("conv", [causal_fft_conv, causal_toeplitz_conv])
def test_fnet_mixing_is_the_causal_convolution(conv):
    x, kernel = torch.randn(2, 13, 3), torch.randn(3, 16)
    expected = torch.zeros_like(x)
    for t in range(13):
        for k in range(t + 1):
            expected[:, t] += kernel[:, k] * x[:, t - k]
    torch.testing.assert_close(conv(x, kernel), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("length", [24, 100])  # the Toeplitz path, then the FFT path
def test_fnet_outputs_do_not_depend_on_later_tokens(length):
    model = tiny("fnet", block=128).eval()
    idx = torch.randint(0, V, (2, length))
    changed = idx.clone()
    changed[:, length // 2 :] = (changed[:, length // 2 :] + 1) % V
    with torch.no_grad():
        a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, : length // 2], b[:, : length // 2], atol=1e-5, rtol=0)  # FFT: rounding only
    assert not torch.allclose(a[:, length // 2 :], b[:, length // 2 :])  # and later positions do react


def test_fourier_mixing_is_the_real_part_of_fnets_dft_with_the_future_masked():
    from genlab.models.fnet import FourierMixing

    T, C, N = 6, 4, 8
    mixer = FourierMixing(FNetConfig(n_embd=C, block_size=N))
    assert list(mixer.parameters()) == [] and mixer.state_dict() == {}  # parameter-free, nothing to save
    x = torch.randn(2, T, C, dtype=torch.float64)
    # Re( (causal rows of the N-point sequence DFT) @ X @ (C-point hidden DFT) ), row t scaled by 1/sqrt((t+1) C)
    seq = torch.fft.fft(torch.eye(N, dtype=torch.float64))[:T, :T] * torch.tril(torch.ones(T, T))
    hidden = torch.fft.fft(torch.eye(C, dtype=torch.float64))
    expected = (seq.to(torch.complex128) @ x.to(torch.complex128) @ hidden).real
    expected = expected / (torch.arange(1, T + 1, dtype=torch.float64)[:, None] * C).sqrt()
    torch.testing.assert_close(mixer(x.float()).double(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mixing", ["learned", "fourier"])
def test_fnet_learns_a_pattern_attention_free(mixing):
    model = FNet(FNetConfig(n_layer=1, n_embd=32, block_size=16, mixing=mixing), V)
    data = torch.arange(17).remainder(5).repeat(8, 1)  # 0 1 2 3 4 0 1 ...
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(60):
        logits = model(data[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), data[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


# ---- n-gram ----------------------------------------------------------------------------------


def naive_kneser_ney(train: list[int], order: int, vocab: int):
    """Interpolated Kneser-Ney written out with dictionaries, the reference for the vectorised model."""
    grams = {k: Counter(tuple(train[i : i + k]) for i in range(len(train) - k + 1)) for k in range(1, order + 1)}
    table = {order: grams[order], **{k: Counter(g[1:] for g in grams[k + 1]) for k in range(1, order)}}
    discount, context = {}, {}
    for k, counts in table.items():
        n1 = sum(v == 1 for v in counts.values())
        n2 = sum(v == 2 for v in counts.values())
        discount[k] = min(max(n1 / (n1 + 2 * n2) if n1 + n2 else 0.5, 0.1), 0.9)
        context[k] = defaultdict(lambda: [0, 0])
        for g, c in counts.items():
            context[k][g[:-1]][0] += c
            context[k][g[:-1]][1] += 1

    def prob(word: int, history: list[int]) -> float:
        p = 1.0 / vocab
        for k in range(1, min(order, len(history) + 1) + 1):
            c = tuple(history[len(history) - k + 1 :]) if k > 1 else ()
            if c in context[k]:
                total, types = context[k][c]
                p = max(table[k].get(c + (word,), 0) - discount[k], 0) / total + discount[k] * types / total * p
        return p

    return prob


def test_ngram_probabilities_are_interpolated_kneser_ney():
    rng = np.random.default_rng(1)
    train = [int(t) for t in rng.choice(6, 400, p=[0.4, 0.2, 0.2, 0.1, 0.05, 0.05])]
    model = NGram(NGramConfig(order=3), 7)  # token 6 never occurs
    model.fit(np.array(train))
    prob = naive_kneser_ney(train, 3, 7)
    test = [int(t) for t in rng.integers(0, 7, 30)]
    logp = model(torch.tensor([test]))[0]
    for t in range(len(test) - 1):
        assert logp[t, test[t + 1]].exp().item() == pytest.approx(prob(test[t + 1], test[: t + 1]), rel=1e-5)
    sums = logp.exp().sum(-1)
    torch.testing.assert_close(sums, torch.ones_like(sums), atol=1e-5, rtol=0)
    assert logp[:, 6].exp().min() > 0  # an unseen token keeps some mass


def test_ngram_refuses_keys_that_overflow():
    with pytest.raises(GenlabError, match="model.order"):
        NGram(NGramConfig(order=5), 70000)


def write_corpus(path):
    lines = ["the cat sat on the mat.", "a dog ate the hat.", "the hat sat on a cat."]
    rng = np.random.default_rng(0)
    path.write_text("\n".join(lines[i] for i in rng.integers(0, 3, 400)) + "\n")
    return path


def test_ngram_trains_saves_and_samples_through_genlab(tmp_path):
    import genlab

    data = write_corpus(tmp_path / "corpus.txt")
    run = genlab.train({"task": "text", "out": str(tmp_path / "run"), "data": {"source": str(data)},
                        "model": {"name": "ngram", "order": 4}, "train": {"progress": False}}, progress=False)
    assert run.results["val_bits_per_char"] < 1.0  # a repetitive corpus: far below log2(vocab) ~ 4.3
    gen = genlab.load(run.path)
    assert gen.model.num_params() > 0  # counts came back from model.safetensors
    again = gen.evaluate(samples=2, sample_tokens=20, progress=False)
    assert again["loss"] == pytest.approx(run.results["val_loss"], abs=1e-5)  # the metrics row holds 5 decimals
    text = gen.generate("the ", max_new_tokens=40, temperature=0.0)[0].text
    assert text.startswith("hat") or text.startswith("cat") or text.startswith("mat")


# ---- compare ----------------------------------------------------------------------------------


def tiny_config(path, family: str, **model) -> str:
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in model.items())
    path.write_text(f'task = "text"\n[model]\nname = "{family}"\n{body}\n'
                    "[train]\nmax_steps = 6\nbatch_size = 4\neval_interval = 3\nlog_interval = 1\nsample_tokens = 5\nprogress = false\n")
    return str(path)


def test_compare_trains_configs_and_reports_one_table_and_plot(tmp_path):
    from genlab.cli import _register, app
    from typer.testing import CliRunner

    data = write_corpus(tmp_path / "corpus.txt")
    gru = tiny_config(tmp_path / "small-gru.toml", "gru", n_layer=1, n_embd=16, block_size=16)
    ngram = tiny_config(tmp_path / "small-ngram.toml", "ngram", order=3)
    _register()
    out = tmp_path / "cmp"
    result = CliRunner().invoke(app, ["compare", gru, ngram, "--data", str(data), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "small-gru" in result.output and "small-ngram" in result.output and "bits/unit" in result.output
    rows = {r["name"]: r for r in json.loads((out / "compare.json").read_text())}
    assert rows["small-gru"]["family"] == "gru" and rows["small-ngram"]["family"] == "ngram"
    assert rows["small-gru"]["train_tokens_per_s"] > 0 and rows["small-ngram"]["sample_tokens_per_s"] > 0
    for row in rows.values():  # bits per char is the loss in bits over the whole val split (1 token = 1 char)
        assert row["val_bits_per_unit"] == pytest.approx(row["val_loss"] / math.log(2), rel=1e-6)
    assert (out / "val_loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_refuses_runs_on_different_splits(tmp_path):
    from genlab.workflows.compare import compare

    data = write_corpus(tmp_path / "corpus.txt")
    a = tiny_config(tmp_path / "a.toml", "ngram", order=2)
    b = tiny_config(tmp_path / "b.toml", "ngram", order=2)
    with open(b, "a") as f:
        f.write("[data]\nval_fraction = 0.3\n")
    with pytest.raises(GenlabError, match="split differs"):
        compare([a, b], out=tmp_path / "cmp", data=str(data), progress=False)


def test_rope_gpt_has_no_position_table_and_only_looks_back():
    model = tiny("gpt-rope").eval()
    assert model.wpe is None and not any("wpe" in k for k in model.state_dict())
    idx = torch.randint(0, V, (2, 20))
    changed = idx.clone()
    changed[:, 10] = (changed[:, 10] + 1) % V
    with torch.no_grad():
        a, b = model(idx), model(changed)
    assert torch.equal(a[:, :10], b[:, :10]) and not torch.allclose(a[:, 10:], b[:, 10:])


def test_compare_models_flag_trains_each_family_with_its_defaults(tmp_path):
    from genlab.workflows.compare import compare

    data = write_corpus(tmp_path / "corpus.txt")
    rows = compare([], out=tmp_path / "cmp", models=["ngram"], data=str(data), progress=False)
    assert [(r["name"], r["family"]) for r in rows] == [("ngram", "ngram")]
    assert (tmp_path / "cmp" / "configs" / "ngram.toml").is_file() and (tmp_path / "cmp" / "ngram" / "model.safetensors").is_file()


# ---- carried state (truncated BPTT) ------------------------------------------------------------


def test_stream_windows_continue_each_row_and_flag_restarts():
    from genlab.datasets.token_store import StreamWindows

    tokens = np.arange(203)
    windows = StreamWindows(tokens, block_size=10, batch_size=4, seed=0)  # 4 streams of 50 tokens
    x1, y1, reset1 = next(windows)
    x2, y2, reset2 = next(windows)
    assert reset1.all() and not reset2.any()
    assert torch.equal(x2[:, 0], x1[:, -1] + 1) and torch.equal(y1, x1 + 1)  # row i goes on where it stopped
    assert (x1[:, 0] // 50 == torch.arange(4)).all()  # each stream stays in its own chunk
    seen = [next(windows) for _ in range(6)]
    assert any(r.all() for _, _, r in seen)  # a stream at the end of its chunk starts over, from zeros
    for x, _, r in seen:
        assert ((x[:, 0] // 50) == torch.arange(4)).all() and ((x[:, -1] // 50) == torch.arange(4)).all()


def test_carried_state_is_the_state_of_one_long_forward():
    from genlab.objectives.lm import LanguageModeling

    model = tiny("lstm").train()
    lm = LanguageModeling(model, carry_state=True)
    x = torch.randint(0, V, (2, 12))
    y = torch.randint(0, V, (2, 12))
    no_reset = torch.zeros(2, dtype=torch.bool)
    with torch.no_grad():
        full = model(x)
        first = lm._carried_forward(x[:, :6], torch.ones(2, dtype=torch.bool))
        second = lm._carried_forward(x[:, 6:], no_reset)
        torch.testing.assert_close(torch.cat([first, second], 1), full)  # window 2 continues window 1
        lm._carried_forward(x[:, 6:], torch.tensor([True, False]))  # row 0 restarts from zeros
    assert lm.state["h"].shape == (2, 2, 16) and set(lm.state_dict()) == {"h", "c"}
    loss = next(lm.losses((x, y, no_reset)))[1]
    loss.backward()  # the carried state is detached: the graph ends at this window
    assert all(v.grad_fn is None for v in lm.state.values())


def test_carry_state_is_refused_for_models_without_a_state(tmp_path):
    import genlab

    data = write_corpus(tmp_path / "corpus.txt")
    with pytest.raises(GenlabError, match="train.carry_state: only recurrent models"):
        genlab.train({"task": "text", "out": str(tmp_path / "run"), "data": {"source": str(data)},
                      "model": {"name": "gpt", "n_layer": 1, "n_head": 1, "n_embd": 8, "block_size": 8},
                      "train": {"carry_state": True, "max_steps": 1, "progress": False}}, progress=False)
    assert not (tmp_path / "run").exists()
