"""The sequence protocol, checked for every family: causality, and step == forward."""

import pytest
import torch

from genlab.core.config import build_config
from genlab.core.families import family

FAMILIES = ["gpt", "gpt-rope", "gpt-bias", "lstm", "gru", "rnn", "fnet", "fnet-fourier", "ngram", "wavenet", "wavenet-k3"]
VOCAB = 50


def tiny_model(name: str):
    sets = {"gpt": ["model.n_layer=2", "model.n_head=2", "model.n_embd=32", "model.block_size=16"],
            "lstm": ["model.n_layer=2", "model.n_embd=32"], "gru": ["model.n_layer=2", "model.n_embd=32"], "rnn": ["model.n_layer=2", "model.n_embd=32"],
            "fnet-fourier": ["model.mixing=fourier"],
            "gpt-rope": ["model.n_layer=2", "model.n_head=2", "model.n_embd=32", "model.block_size=16", "model.rope=true"],
            "gpt-bias": ["model.n_layer=2", "model.n_head=2", "model.n_embd=32", "model.block_size=16", "model.bias=true"],
            # receptive fields of 8 and 15 samples: shorter than the 16-token inputs, and a prompt of 5 shorter than
            # the deepest layer's ring buffer
            "wavenet": ["model.layers_per_stack=3", "model.residual_channels=8", "model.skip_channels=8"],
            "wavenet-k3": ["model.layers_per_stack=3", "model.stacks=1", "model.kernel_size=3", "model.residual_channels=8",
                           "model.skip_channels=8"]}.get(name, [])
    cfg = build_config(None, {"model": name.split("-")[0]}, sets)
    torch.manual_seed(0)
    model = family(cfg.model.name).model(cfg.model, VOCAB)
    if name == "gpt-bias":  # biases start at zero; make them count, so that every path must add them
        with torch.no_grad():
            for key, p in model.named_parameters():
                if key.endswith("bias"):
                    p.normal_(0, 0.5)
    if hasattr(model, "fit"):  # count-based families learn from tokens, not from gradients
        model.fit(torch.randint(0, VOCAB, (2000,), generator=torch.Generator().manual_seed(0)).numpy().astype("uint16"))
    return model.eval()


@pytest.mark.parametrize("name", FAMILIES)
def test_changing_token_t_never_changes_logits_before_t(name):
    model = tiny_model(name)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, VOCAB, (2, 16), generator=g)
    with torch.no_grad():
        base = model(x)
        for t in (0, 5, 15):
            y = x.clone()
            y[:, t] = (y[:, t] + 7) % VOCAB
            changed = model(y)
            assert torch.equal(base[:, :t], changed[:, :t]), f"{name}: position < {t} saw token {t}"
            assert not torch.allclose(base[:, t:], changed[:, t:]), f"{name}: token {t} had no effect at all"


@pytest.mark.parametrize("name", FAMILIES)
def test_incremental_step_matches_full_forward(name):
    model = tiny_model(name)
    x = torch.randint(0, VOCAB, (3, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(x)
        state = model.init_state(3)
        first, state = model.step(x[:, :5], state)  # a prompt at once, more of it after, then token by token
        more, state = model.step(x[:, 5:8], state)
        rest = [more]
        for t in range(8, 12):
            logits, state = model.step(x[:, t : t + 1], state)
            rest.append(logits)
        stepped = torch.cat([first, *rest], dim=1)
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=1e-4)


def test_gpt_ties_input_and_output_embeddings():
    model = tiny_model("gpt")
    assert model.lm_head.weight is model.wte.weight


@pytest.mark.parametrize("name", ["gpt", "gpt-rope", "gpt-bias"])
@pytest.mark.parametrize("rows", [(1, 2, 3), (0, 2, 3)])  # packed rows (read as a view) and rows with a gap (gathered)
def test_rows_at_their_own_positions_match_full_forward(name, rows):
    # Continuous batching: each cache row holds its own request, one token per row per step at its own position.
    model = tiny_model(name)
    x = torch.randint(0, VOCAB, (3, 12), generator=torch.Generator().manual_seed(3))
    lengths = [3, 5, 8]
    with torch.no_grad():
        full = model(x)
        slots = model.init_slots(4)
        for b, (row, n) in enumerate(zip(rows, lengths)):
            model.fill_slot(slots, row, x[b: b + 1, :n])
        for i in range(4):
            positions = [n + i for n in lengths]
            idx = x[torch.arange(3), positions]
            logits = model.step_slots(slots, list(rows), idx, positions)  # (3, V)
            torch.testing.assert_close(logits, full[torch.arange(3), positions], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["gpt", "gpt-rope", "gpt-bias"])
def test_a_lone_row_steps_through_its_own_cache_rows_like_the_full_forward(name):
    """One running row takes the plain-position path (no mask, sliced cache rows): the same logits, and the
    cache rows beside it untouched."""
    model = tiny_model(name)
    x = torch.randint(0, VOCAB, (1, 12), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        full = model(x)[0]
        slots = model.init_slots(4)
        model.fill_slot(slots, 2, x[:, :4])
        others = [layer["k"][[0, 1, 3]].clone() for layer in slots["layers"]]
        for p in range(4, 12):
            logits = model.step_slots(slots, [2], x[:, p], [p])  # (1, V)
            torch.testing.assert_close(logits[0], full[p], atol=1e-5, rtol=1e-4)
        assert all(torch.equal(layer["k"][[0, 1, 3]], before) for layer, before in zip(slots["layers"], others))


def test_rope_rotates_head_halves_and_scores_depend_on_relative_position_only():
    from genlab.models.gpt import apply_rope, rope_tables

    hs, T = 8, 12
    cos, sin = rope_tables(T, hs)
    x = torch.randn(T, hs)
    rotated = apply_rope(x, cos, sin)
    # the textbook rotation of each (first half, second half) pair, angle pos * 10000^(-2i/hs)
    angle = torch.arange(T)[:, None] * 10000.0 ** (-torch.arange(0, hs, 2) / hs)
    x1, x2 = x.chunk(2, -1)
    expected = torch.cat([x1 * angle.cos() - x2 * angle.sin(), x2 * angle.cos() + x1 * angle.sin()], -1)
    torch.testing.assert_close(rotated, expected)
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1))  # a rotation keeps lengths
    q, k = torch.randn(hs), torch.randn(hs)
    at = lambda v, p: apply_rope(v, cos[p], sin[p])  # noqa: E731
    assert torch.allclose(at(q, 7) @ at(k, 3), at(q, 4) @ at(k, 0), atol=1e-5)  # same distance, same score
    assert not torch.allclose(at(q, 7) @ at(k, 3), at(q, 7) @ at(k, 0), atol=1e-3)


def test_the_one_token_step_follows_weights_changed_after_an_earlier_state():
    # The step's laid-out weights are kept on the model between states; weights trained or loaded since must
    # be the ones the next state decodes with.
    model = tiny_model("gpt")
    x = torch.randint(0, VOCAB, (2, 6), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        model.step(x[:, :1], model.init_state(2))
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))  # as an optimizer step would, in place
        state = model.init_state(2)
        stepped = torch.cat([model.step(x[:, t: t + 1], state)[0] for t in range(6)], dim=1)
        torch.testing.assert_close(stepped, model(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["gpt", "gpt-rope", "fnet", "fnet-fourier"])
def test_training_sampling_and_the_onnx_graph_share_one_cached_mixing(name, monkeypatch):
    """GPT's attention and FNet's mixing of new positions have one home each: the prefill, the one-token step,
    the engine's slots and the ONNX wrapper (exact with the forward) all go through it, never a copy."""
    from genlab.export import onnx as onnx_export
    from genlab.models import fnet, gpt

    model = tiny_model(name)
    n_layer = len(model.blocks)
    calls = []
    if name.startswith("gpt"):
        original = gpt.attend
        monkeypatch.setattr(gpt, "attend", lambda *a, **k: calls.append(1) or original(*a, **k))
    else:
        for mixer in (fnet.LearnedConvMixing, fnet.FourierMixing):
            original_rows = mixer.new_rows
            monkeypatch.setattr(mixer, "new_rows", lambda self, *a, _f=original_rows: calls.append(1) or _f(self, *a))
    x = torch.randint(0, VOCAB, (2, 6), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        state = model.init_state(2)
        _, state = model.step(x[:, :5], state)  # prefill
        _, state = model.step(x[:, 5:], state)  # one token
        assert len(calls) == 2 * n_layer
        calls.clear()
        if name.startswith("gpt"):
            wrapper = onnx_export.GPTWithPast(model)
            c = model.cfg
            empty = torch.zeros(c.n_layer, 2, c.n_head, 0, c.n_embd // c.n_head)
            logits, _, _ = wrapper(x, torch.arange(6).repeat(2, 1), torch.ones(2, 6, dtype=torch.long), empty, empty)
            _, keys, values = wrapper(x[:, :5], torch.arange(5).repeat(2, 1), torch.ones(2, 5, dtype=torch.long), empty, empty)
            step_logits, _, _ = wrapper(x[:, 5:], torch.full((2, 1), 5), torch.ones(2, 6, dtype=torch.long), keys, values)
        else:
            wrapper = onnx_export.FNetWithPast(model)
            logits, present = wrapper(x, torch.zeros(n_layer, 2, 0, model.cfg.n_embd))
            step_logits, _ = wrapper(x[:, 5:], present[:, :, :5])
        assert len(calls) == (3 if name.startswith("gpt") else 2) * n_layer  # every layer of every call
        torch.testing.assert_close(logits, model(x), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(step_logits[:, -1], model(x)[:, -1], atol=1e-5, rtol=1e-4)
