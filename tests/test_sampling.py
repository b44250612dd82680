import torch

from genlab.sampling.lm import Decoding, filter_logits, generate_tokens
from test_sequence_models import tiny_model


def test_top_k_keeps_exactly_the_k_largest():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]])
    out = filter_logits(logits, None, Decoding(temperature=1.0, top_k=2))
    assert torch.isfinite(out).tolist() == [[False, True, False, True, False]]


def test_top_p_keeps_the_smallest_set_covering_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    out = filter_logits(probs.log(), None, Decoding(temperature=1.0, top_p=0.75))
    assert torch.isfinite(out).tolist() == [[True, True, False, False]]  # 0.5 < 0.75 needs the 0.3 too
    out = filter_logits(probs.log(), None, Decoding(temperature=1.0, top_p=0.1))
    assert torch.isfinite(out).tolist() == [[True, False, False, False]]  # the top token always stays


def test_repetition_penalty_lowers_only_seen_tokens():
    logits = torch.tensor([[2.0, -1.0, 2.0, -1.0]])
    out = filter_logits(logits, torch.tensor([[0, 1]]), Decoding(temperature=1.0, repetition_penalty=2.0))
    assert out.tolist() == [[1.0, -2.0, 2.0, -1.0]]


def test_same_seed_same_tokens_and_batches_differ():
    model = tiny_model("gpt")
    d = Decoding(max_new_tokens=12, temperature=1.0)
    run = lambda seed: torch.stack(list(generate_tokens(model, torch.tensor([[1]] * 4), d, torch.Generator().manual_seed(seed))), 1)
    a, b = run(7), run(7)
    assert torch.equal(a, b)
    assert not torch.equal(run(8), a)
    assert len({tuple(r) for r in a.tolist()}) > 1  # rows of a batch are independent draws
