import random

import pytest
import torch

from genlab.core.generators import SamplingParams
from genlab.sampling.engine import Engine, Request, decode, filter_logits
from test_sequence_models import tiny_model
from test_zoo import decode_rows


def test_top_k_keeps_exactly_the_k_largest():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]])
    out = filter_logits(logits, None, SamplingParams(temperature=1.0, top_k=2, top_p=1.0))
    assert torch.isfinite(out).tolist() == [[False, True, False, True, False]]


def test_top_p_keeps_the_smallest_set_covering_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    out = filter_logits(probs.log(), None, SamplingParams(temperature=1.0, top_p=0.75))
    assert torch.isfinite(out).tolist() == [[True, True, False, False]]  # 0.5 < 0.75 needs the 0.3 too
    out = filter_logits(probs.log(), None, SamplingParams(temperature=1.0, top_p=0.1))
    assert torch.isfinite(out).tolist() == [[True, False, False, False]]  # the top token always stays


def test_repetition_penalty_lowers_only_seen_tokens():
    logits = torch.tensor([[2.0, -1.0, 2.0, -1.0]])
    out = filter_logits(logits, torch.tensor([[0, 1]]), SamplingParams(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=2.0))
    assert out.tolist() == [[1.0, -2.0, 2.0, -1.0]]


def test_same_seed_same_tokens_and_batches_differ():
    model = tiny_model("gpt")
    d = SamplingParams(max_new_tokens=12, temperature=1.0)
    run = lambda seed: decode_rows(model, torch.tensor([[1]] * 4), d, use_cache=True, seed=seed)  # noqa: E731
    a, b = run(7), run(7)
    assert torch.equal(a, b)
    assert not torch.equal(run(8), a)
    assert len({tuple(r) for r in a.tolist()}) > 1  # rows of a batch are independent draws


@pytest.mark.parametrize("continuous", [False, True])  # groups of rows, or rows of one cache at their own positions
def test_requests_join_and_leave_between_steps_without_changing_each_other(continuous):
    # A request's tokens depend only on its prompt, options and seed: not on who shares the engine.
    model = tiny_model("gpt")
    a = Request([1, 2, 3], SamplingParams(max_new_tokens=10, temperature=1.0), seed=1)
    b = Request([4], SamplingParams(max_new_tokens=6, temperature=0.7, top_k=3), seed=2)
    c = Request([5, 6, 7], SamplingParams(max_new_tokens=10, temperature=1.0, repetition_penalty=1.3), seed=3)
    alone = {}
    for name, r in {"a": a, "b": b, "c": c}.items():
        e = Engine(model, continuous=continuous)
        slot = e.add(r)
        while e.active:
            e.step()
        alone[name] = e.tokens(slot)

    engine = Engine(model, continuous=continuous)
    slot_a = engine.add(a)
    events = engine.step() + engine.step() + engine.step()
    slot_b, slot_c = engine.add(b), engine.add(c)  # join after three steps
    doomed = engine.add(Request([9], SamplingParams(max_new_tokens=50), seed=4))
    finished = {}
    while engine.active:
        step = engine.step()
        assert len({e.slot for e in step}) == len(step)  # at most one token per slot per step
        events += step
        finished |= {e.slot: e.finish for e in step if e.finish}
        if len(engine.tokens(doomed)) == 2:
            engine.cancel(doomed)  # leaves after two tokens
    assert engine.tokens(slot_a) == alone["a"]
    assert engine.tokens(slot_b) == alone["b"] and engine.tokens(slot_c) == alone["c"]
    assert len(engine.tokens(doomed)) == 2 and doomed not in finished
    assert finished == {slot_a: "length", slot_b: "length", slot_c: "length"}
    assert [e.token for e in events if e.slot == slot_a] == alone["a"]
    if continuous:  # every row went back to the pool, lowest first
        assert sorted(engine.pool.free) == list(range(engine.pool.capacity))


def test_the_pool_grows_past_its_rows_and_a_lone_row_then_reads_the_new_cache():
    """Ten requests outgrow the pool's eight rows (it doubles, rows in use keep their place); as they end, the
    highest rows move down into their holes, so the rows in use stay the first ones (read as a view); the last
    one left steps alone through views of its row, which must be views of the grown cache, not the old one.
    Every request's tokens are those it draws alone."""
    model = tiny_model("gpt")
    budgets = [30] + [4 + 2 * i for i in range(1, 10)]  # the first request, alone before and after, ends last
    requests = [Request([1 + i, 2], SamplingParams(max_new_tokens=b, temperature=1.0), seed=i) for i, b in enumerate(budgets)]
    alone = []
    for r in requests:
        e = Engine(model, continuous=True)
        slot = e.add(r)
        while e.active:
            e.step()
        alone.append(e.tokens(slot))
    engine = Engine(model, continuous=True)
    first = engine.add(requests[0])
    engine.step()
    engine.step()  # a lone row: its views are kept
    slots = [first] + [engine.add(r) for r in requests[1:]]
    while engine.active:
        ended = sum(e.finish is not None for e in engine.step())
        held = sorted(s.row for s in engine.slots.values() if s.row is not None)
        assert not held or held[-1] < len(held) + ended  # a finished row's hole is filled at the next step
    assert engine.pool.capacity == 16
    assert [engine.tokens(s) for s in slots] == alone


def test_bench_measures_peak_mfu_and_decoding_against_transformers():
    # `genlab bench` at test size: every figure is measured, and MFU is a share of the peak measured beside it.
    from genlab.workflows.benchmark import decode_comparison, training_mfu
    from genlab.models.gpt import GPT, GPTConfig

    cfg = GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=16)
    train = training_mfu({"tiny": (cfg, 2), "wider": (cfg.model_copy(update={"n_embd": 64}), 2)}, rounds=1, steps=2)
    assert train["peak_gflops"] > 0 and set(train["rows"]) == {"tiny eager float32", "wider eager float32"}
    tiny, wider = train["rows"]["tiny eager float32"], train["rows"]["wider eager float32"]
    assert all(0 < r["mfu"] < 1.5 and r["tokens_per_s"] > 0 for r in (tiny, wider))
    assert wider["flops_per_token"] > 3 * tiny["flops_per_token"]  # 4x the weights per layer: FLOPs follow the shape
    model = GPT(cfg, 65).eval()
    d = decode_comparison(model, (1, 2), 5, rounds=1)
    ours, theirs = d["genlab_tokens_per_s"], d["transformers_tokens_per_s"]
    assert set(ours) == set(theirs) == {1, 2} and min(ours.values()) > 0 and min(theirs.values()) > 0


def test_rows_of_one_prompt_share_one_prefill_and_still_draw_their_own_tokens(monkeypatch):
    model = tiny_model("gpt")
    prompt = [1, 2, 3, 4, 5]
    alone = []
    for seed in range(6):
        e = Engine(model, continuous=True)
        alone.append(e.tokens(decode(e, [Request(prompt, SamplingParams(max_new_tokens=8, temperature=1.0), seed=seed)])[0]))
    calls = []
    fill = model.fill_slot
    monkeypatch.setattr(model, "fill_slot", lambda *a: calls.append(1) or fill(*a))
    engine = Engine(model, continuous=True)
    slots = decode(engine, [Request(prompt, SamplingParams(max_new_tokens=8, temperature=1.0), seed=seed) for seed in range(6)])
    assert len(calls) == 1  # six rows, one prefill: the others copy its cache rows
    assert [engine.tokens(s) for s in slots] == alone


@pytest.mark.parametrize("schema_or_regex", [
    {"type": "object", "properties": {"name": {"type": "string", "maxLength": 6},
                                      "age": {"type": "integer", "minimum": 0, "maximum": 120}}, "required": ["name", "age"]},
    {"enum": ["red", "green", None]},
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}",
])
def test_the_lazy_matcher_allows_exactly_what_the_automaton_allows(schema_or_regex):
    """llguidance (the fallback for patterns whose automaton is too costly) masks the same tokens as outlines-core's
    automaton at every step of 30 random walks, and ends where it ends."""
    import random

    from genlab.sampling.constraints import LazyPattern, Pattern
    from genlab.server.structured import schema_regex
    from genlab.tokenizers.char import CharTokenizer

    tokenizer = CharTokenizer("".join(sorted({chr(c) for c in range(32, 127)} | {"\n"})))
    end = tokenizer.encode("\n")[0]
    regex = schema_or_regex if isinstance(schema_or_regex, str) else schema_regex(schema_or_regex)
    automaton, lazy = Pattern(regex, tokenizer, end), LazyPattern(regex, tokenizer, end)
    rng = random.Random(0)
    for _ in range(30):
        a, b = automaton.constraint(), lazy.constraint()
        for _ in range(80):
            allowed = a.allowed(1000, "cpu")
            assert torch.equal(allowed, b.allowed(1000, "cpu"))
            token = rng.choice(allowed.nonzero().flatten().tolist())
            ended = a.advance(token)
            assert b.advance(token) == ended
            if ended or a.must_end(1000):
                assert ended or b.must_end(1000)
                break


def test_a_tiny_temperature_draws_the_likeliest_token_not_garbage():
    """logits / 1e-300 overflowed to inf - inf = nan, and the draw took any token, even one the pattern masked."""
    from genlab.core.generators import SamplingParams
    from genlab.sampling.engine import GREEDY_BELOW, choose, filter_logits

    logits = torch.tensor([[0.5, 3.0, float("-inf"), 1.0]])
    for t in (5e-324, 1e-300, 1e-8, 2e-6, 1e-4):
        filtered = filter_logits(logits, None, SamplingParams(temperature=t))
        assert not filtered.isnan().any()
        greedy = t < GREEDY_BELOW  # as the engine decides
        assert [choose(filtered, [greedy], [u]).item() for u in (0.0, 0.5, 0.999)] == [1, 1, 1]


def test_a_line_break_the_pattern_also_takes_as_text_ends_the_row_where_it_may_end():
    """`a(\\n[0-9]{5})?` with 3 tokens left: after `a` the row may end, and a line break there is offered as the
    end; taken as text instead, the five digits no longer fit and the next mask was empty (the fuzzer found a
    draw outside the pattern)."""
    from genlab.sampling.constraints import LazyPattern, Pattern
    from genlab.tokenizers.char import CharTokenizer

    tokenizer = CharTokenizer("\n0123456789a")
    end = tokenizer.encode("\n")[0]
    for pattern in (Pattern("a(\n[0-9]{5})?", tokenizer, end), LazyPattern("a(\n[0-9]{5})?", tokenizer, end)):
        row = pattern.constraint()
        assert row.advance(tokenizer.encode("a")[0]) is False
        assert row.allowed(3, "cpu")[end] and row.advance(end) is True


def test_max_time_ends_a_row_on_the_wall_clock_and_keeps_what_it_made(monkeypatch):
    """SamplingParams.max_time (`genlab sample --max-time`): a row ends with finish "time" at the first token past its
    deadline, with the tokens drawn until then the same as without a deadline."""
    model = tiny_model("gpt")
    now = [100.0]
    monkeypatch.setattr("genlab.sampling.engine.time.monotonic", lambda: now[0])
    engine = Engine(model)
    timed = engine.add(Request([1], SamplingParams(max_new_tokens=50, temperature=1.0, max_time=3.0), seed=5))
    free = engine.add(Request([1], SamplingParams(max_new_tokens=50, temperature=1.0), seed=5))
    finishes = {}
    for step in range(50):
        now[0] += 1.0  # one second a step: the timed row's third token is its last
        for event in engine.step():
            if event.finish is not None:
                finishes[event.slot] = (step, event.finish)
    assert finishes == {timed: (2, "time"), free: (49, "length")}
    assert engine.tokens(timed) == engine.tokens(free)[:3]


def stream_with_stops(pieces: list[str], stops: list[str]) -> tuple[list[str], str]:
    """The rule written plainly: a character at a time, the text ends where the first stop string to be complete
    begins (the longest, if several end at that character); after each piece, what may begin a stop string is
    held back. -> (the text released after each piece, the final text)."""
    text, released, emitted = "", [], 0
    for piece in pieces:
        for char in piece:
            text += char
            starts = [len(text) - len(s) for s in stops if text.endswith(s)]
            if starts:
                text = text[: min(starts)]
                return released + [text[emitted:]], text
        held = max((k for s in stops for k in range(1, min(len(s) - 1, len(text)) + 1) if text.endswith(s[:k])), default=0)
        released.append(text[emitted: len(text) - held])
        emitted = max(emitted, len(text) - held)
    return released, text


def test_stop_strings_end_the_text_and_hold_back_their_beginnings_as_the_plain_rule_says():
    """Random pieces and stop strings over two or three letters (overlaps everywhere), and stop strings of
    thousands of characters: what each piece releases and where the text ends are the plain rule's. Stop
    strings are followed a character at a time, so a long one costs no more than a short one (it cost its
    length squared per token)."""
    from genlab.sampling.engine import TextAssembler

    class Pieces:  # each "token" is a piece of text
        @staticmethod
        def decode(ids):
            return "".join(ids)

    rng = random.Random(0)
    cases = []
    for case in range(2000):
        alphabet = "ab" if case % 2 else "abc"
        word = lambda low, high: "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))  # noqa: E731
        cases.append(([word(1, 3) for _ in range(rng.randint(1, 12))], [word(1, 5) for _ in range(rng.randint(0, 3))]))
    cases.append((["ab" * 50] * 40 + ["c"], ["ab" * 2000 + "c", "b" * 3000]))  # long stops that nearly match
    cases.append((["ab" * 50] * 40 + ["c"], ["ab" * 1000 + "c"]))
    for pieces, stops in cases:
        assembler = TextAssembler(Pieces(), stops)
        released = []
        for piece in pieces:
            assembler.push(piece)
            released.append(assembler.take())
            if assembler.stopped:
                break
        assert (released, assembler.text) == stream_with_stops(pieces, stops), (pieces, stops)
