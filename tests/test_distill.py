"""Knowledge distillation: the soft-target loss, the critic that changes nothing at weight 0, and the CLI."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from conftest import make_corpus
from genlab.models.rnn import RNN, RNNConfig
from genlab.objectives.kd import Distillation, SequenceCritic, distillation_loss


def test_the_soft_target_loss_is_t_squared_times_the_kl_and_zero_for_a_perfect_copy():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 5, 7), torch.randn(2, 5, 7)
    T = 3.0
    p = (teacher / T).softmax(-1)
    expected = (p * (p.log() - (student / T).log_softmax(-1))).sum(-1).mean() * T * T
    torch.testing.assert_close(distillation_loss(student, teacher, T), expected)
    assert distillation_loss(teacher, teacher, T).abs() < 1e-6


def steps(objective: Distillation, n: int) -> None:
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-2) for name, m in objective.players.items()}
    g = torch.Generator().manual_seed(5)
    for _ in range(n):
        x = torch.randint(0, 11, (4, 12), generator=g)
        batch = (x, torch.roll(x, -1, dims=1))
        for name, loss, _ in objective.losses(batch):
            optimizers[name].zero_grad()
            loss.backward()
            optimizers[name].step()


def test_a_critic_at_weight_zero_leaves_the_students_updates_exactly_those_of_plain_distillation():
    torch.manual_seed(0)
    teacher = RNN(RNNConfig(name="gru", n_layer=1, n_embd=16, dropout=0.0), 11)
    student = RNN(RNNConfig(name="lstm", n_layer=1, n_embd=8, dropout=0.0), 11)
    plain_student, critic_student = copy.deepcopy(student), copy.deepcopy(student)
    torch.manual_seed(1)
    steps(Distillation(plain_student, teacher, 0.5, 2.0), 6)
    torch.manual_seed(1)
    with_critic = Distillation(critic_student, teacher, 0.5, 2.0, adv_weight=0.0, critic=SequenceCritic(11, 8))
    steps(with_critic, 6)
    for (name, a), b in zip(plain_student.state_dict().items(), critic_student.state_dict().values()):
        assert torch.equal(a, b), name
    # ...and with weight, the critic does move the student
    torch.manual_seed(1)
    moved = copy.deepcopy(student)
    steps(Distillation(moved, teacher, 0.5, 2.0, adv_weight=1.0, critic=SequenceCritic(11, 8)), 6)
    assert not torch.equal(moved.head.weight, plain_student.head.weight)


def test_gumbel_draws_are_one_hot_forward_and_carry_the_softmax_gradient():
    objective = Distillation(torch.nn.Identity(), torch.nn.Identity(), 0.5, 1.0, critic=SequenceCritic(6, 4))
    logits = torch.randn(3, 4, 6, requires_grad=True)
    draw = objective.gumbel_draw(logits)
    one_hot = torch.nn.functional.one_hot(draw.detach().argmax(-1), 6).float()
    torch.testing.assert_close(draw.detach(), one_hot)  # the value is a draw (up to rounding in hard + soft - soft)
    (draw * torch.arange(6.0)).sum().backward()
    assert logits.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    import genlab

    folder = tmp_path_factory.mktemp("teacher")
    (folder / "corpus.txt").write_text(make_corpus(12_000))
    return genlab.train({"task": "text", "out": str(folder / "run"), "data": {"source": str(folder / "corpus.txt")},
                         "model": {"name": "gpt", "n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32},
                         "train": {"max_steps": 20, "batch_size": 8, "eval_interval": 10, "eval_batches": 2,
                                   "sample_tokens": 10, "progress": False}}, progress=False).path


SMALL_LSTM = ["--model", "lstm", "--set", "model.n_layer=1", "--set", "model.n_embd=16", "--set", "model.block_size=32",
              "--set", "train.eval_interval=5", "--set", "train.eval_batches=2", "--set", "train.sample_tokens=10",
              "--batch-size", "8", "--quiet"]


def test_a_gpt_teacher_distills_into_an_lstm_student_that_is_a_normal_run(cli, teacher, tmp_path):
    student = tmp_path / "student"
    r = cli("distill", "--teacher", teacher, "--out", student, "--max-steps", "10", "--adv-weight", "0.1", *SMALL_LSTM)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in (student / "metrics.jsonl").read_text().splitlines()]
    logged = {k for row in rows for k in row}
    assert {"ce", "kd", "adv", "critic_loss", "val_loss"} <= logged
    assert (student / "tokenizer.json").read_text() == (teacher / "tokenizer.json").read_text()
    r = cli("sample", student, "--prompt", "The", "--max-new-tokens", "8", "--seed", "1")
    assert r.returncode == 0 and r.stdout.startswith("The")
    assert cli("eval", student, "--n", "2").returncode == 0


def test_a_student_must_share_the_teachers_tokenizer_and_fit_its_context(cli, teacher, tmp_path):
    r = cli("distill", "--teacher", teacher, "--out", tmp_path / "s1", "--max-steps", "2", *SMALL_LSTM, "--set", "tokenizer.kind=bpe")
    assert r.returncode != 0 and "tokenizer" in r.stderr and "'char'" in r.stderr
    r = cli("distill", "--teacher", teacher, "--out", tmp_path / "s2", "--max-steps", "2", *SMALL_LSTM, "--set", "model.block_size=64")
    assert r.returncode != 0 and "block_size" in r.stderr and "32" in r.stderr


def test_the_top_k_loss_over_the_whole_vocabulary_is_the_full_soft_target_loss():
    from genlab.objectives.kd import topk_distillation_loss

    torch.manual_seed(0)
    student, teacher = torch.randn(2, 5, 7), torch.randn(2, 5, 7)
    top = teacher.topk(7, dim=-1)
    torch.testing.assert_close(topk_distillation_loss(student, top.values, top.indices, 2.0), distillation_loss(student, teacher, 2.0))
    small = teacher.topk(3, dim=-1)
    assert topk_distillation_loss(student, small.values, small.indices, 2.0) > 0


def test_a_cached_teacher_trains_the_student_from_disk_with_the_teachers_own_top_logits(cli, teacher, tmp_path):
    import genlab
    from genlab.datasets.teacher_cache import TeacherCache
    from genlab.datasets.token_store import TokenStore

    student = tmp_path / "cached"
    r = cli("distill", "--teacher", teacher, "--out", student, "--max-steps", "6", "--cache-topk", "5", *SMALL_LSTM)
    assert r.returncode == 0, r.stderr
    cache = TeacherCache(student / "teacher_cache")
    assert cache.header["k"] == 5 and cache.header["block"] == 32 and cache.values.shape[1] == 5
    tokens = TokenStore(student / "data").split("train")
    model = genlab.load(teacher, device="cpu").model
    with torch.no_grad():
        top = model(torch.from_numpy(tokens[64:96].astype("int64"))[None])[0].topk(5, dim=-1)  # window 2
    torch.testing.assert_close(torch.from_numpy(cache.values[64:96].astype("float32")), top.values, atol=2e-2, rtol=1e-2)
    assert torch.equal(torch.from_numpy(cache.indices[64:96].astype("int64")), top.indices)
    rows = [json.loads(line) for line in (student / "metrics.jsonl").read_text().splitlines()]
    assert any("kd" in row for row in rows)


def test_a_local_hugging_face_model_teaches_a_student_that_keeps_its_tokenizer(cli, tmp_path):
    from transformers import AutoTokenizer

    from test_hf import CODE, save_tiny_model

    folder = save_tiny_model(tmp_path / "hf-teacher")
    (tmp_path / "code.py").write_text(CODE * 40)
    student = tmp_path / "student"
    r = cli("distill", "--teacher", f"hf:{folder}", "--data", tmp_path / "code.py", "--out", student, "--max-steps", "4",
            *SMALL_LSTM)
    assert r.returncode == 0, r.stderr
    saved = json.loads((student / "tokenizer.json").read_text())
    assert saved["genlab_tokenizer"] == "hf"
    from genlab.tokenizers import load_tokenizer

    ours, theirs = load_tokenizer(student / "tokenizer.json"), AutoTokenizer.from_pretrained(folder)
    assert ours.encode(CODE) == theirs.encode(CODE, add_special_tokens=False) and ours.decode(ours.encode(CODE)) == CODE
    r = cli("sample", student, "--prompt", "def ", "--max-new-tokens", "5", "--seed", "0")
    assert r.returncode == 0 and r.stdout.startswith("def ")
    r = cli("distill", "--teacher", f"hf:{folder}", "--out", tmp_path / "s2", *SMALL_LSTM)
    assert r.returncode != 0 and "--data" in r.stderr
