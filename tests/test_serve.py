"""`genlab serve`: OpenAI's API over genlab runs, driven by the official `openai` client against a real
uvicorn server on loopback; the playground page in a real headless Chromium."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

import genlab
from conftest import make_corpus, require_tools, tiny_config
from genlab.core.errors import GenlabError

KEY = "test-key-123"


class Server:
    """A uvicorn server for `app` in a thread, on a free loopback port (`options`: more of uvicorn's Config)."""

    def __init__(self, app, **options):
        import uvicorn

        self.app = app
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="error", **options))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                break
            time.sleep(0.02)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    corpus = root / "corpus.txt"
    # Chat-shaped text, so the plain chat template's own words are in the model's vocabulary.
    lines = make_corpus().splitlines()
    corpus.write_text("".join(f"System: Be brief.\n\nUser: {a}\n\nAssistant: {b}\n\n" for a, b in zip(lines[::2], lines[1::2])))
    text = genlab.train(tiny_config(corpus, root / "words", max_steps=40), progress=False)
    image = genlab.train({"task": "image", "out": str(root / "digits"), "data": {"source": "digits"},
                          "model": {"name": "gan", "hidden": [32], "latent_dim": 8},
                          "train": {"max_steps": 2, "batch_size": 16, "eval_interval": 1000, "progress": False}}, progress=False)
    midi = root / "midi"
    midi.mkdir()
    for k in range(3):
        write_melody(midi / f"piece{k}.mid", step=k + 2)
    music = genlab.train({"task": "music", "out": str(root / "tunes"), "data": {"source": str(midi), "music": {"transpose": 0}},
                          "model": {"name": "gpt", "n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 64},
                          "train": {"max_steps": 2, "batch_size": 4, "eval_interval": 1000, "progress": False}}, progress=False)
    return {"words": text.path, "digits": image.path, "tunes": music.path, "midi": midi}


def write_melody(path, step: int, notes: int = 64):
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    piano = pretty_midi.Instrument(program=0)
    piano.notes = [pretty_midi.Note(velocity=80, pitch=55 + (i * step) % 24, start=i * 0.25, end=i * 0.25 + 0.25)
                   for i in range(notes)]
    pm.instruments.append(piano)
    pm.write(str(path))


@pytest.fixture(scope="module")
def server(runs):
    from genlab.server import build

    s = Server(build([str(runs["words"]), str(runs["digits"]), str(runs["tunes"])], api_key=KEY, device="cpu",
                     max_batch=64, max_queue=64))
    yield s
    s.stop()


@pytest.fixture
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60)


def test_models_are_listed_by_folder_name(client):
    assert {m.id for m in client.models.list().data} == {"words", "digits", "tunes"}


def test_completions_plain_streamed_and_counted(client):
    answer = client.completions.create(model="words", prompt="The cat", max_tokens=12, n=2, seed=7, temperature=0.9)
    assert len(answer.choices) == 2 and {c.index for c in answer.choices} == {0, 1}
    assert all(c.finish_reason == "length" for c in answer.choices)
    assert answer.usage.completion_tokens == 24 and answer.usage.prompt_tokens == len("The cat")  # characters
    assert answer.usage.total_tokens == 24 + len("The cat")
    chunks = list(client.completions.create(model="words", prompt="The cat", max_tokens=12, n=2, seed=7, temperature=0.9,
                                            stream=True))
    streamed = ["", ""]
    for chunk in chunks:
        for c in chunk.choices:
            streamed[c.index] += c.text
    assert streamed == [c.text for c in sorted(answer.choices, key=lambda c: c.index)]  # same seed, same text
    finals = [c for chunk in chunks for c in chunk.choices if c.finish_reason]
    assert sorted(c.index for c in finals) == [0, 1] and {c.finish_reason for c in finals} == {"length"}


def test_stop_strings_end_a_completion(client):
    free = client.completions.create(model="words", prompt="The", max_tokens=40, temperature=0, seed=0).choices[0].text
    stop = free[10:12]
    stopped = client.completions.create(model="words", prompt="The", max_tokens=40, temperature=0, seed=0, stop=[stop])
    assert stopped.choices[0].text == free[: free.index(stop)] and stopped.choices[0].finish_reason == "stop"


def test_chat_through_the_plain_template(client):
    import openai

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "The dog"}]
    answer = client.chat.completions.create(model="words", messages=messages, max_tokens=15, seed=3)
    message = answer.choices[0].message
    assert message.role == "assistant" and isinstance(message.content, str)
    assert answer.usage.prompt_tokens == len("System: Be brief.\n\nUser: The dog\n\nAssistant:")
    stream = client.chat.completions.create(model="words", messages=messages, max_completion_tokens=15, seed=3, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip() == message.content
    assert chunks[-1].usage.completion_tokens == answer.usage.completion_tokens
    # Content as a list of text parts, as OpenAI's clients also send it: the same prompt, so the same answer
    parts = [messages[0], {"role": "user", "content": [{"type": "text", "text": "The "}, {"type": "text", "text": "dog"}]}]
    again = client.chat.completions.create(model="words", messages=parts, max_tokens=15, seed=3)
    assert again.choices[0].message.content == message.content and again.usage.prompt_tokens == answer.usage.prompt_tokens
    picture = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}]
    with pytest.raises(openai.BadRequestError, match="text parts only") as refused:
        client.chat.completions.create(model="words", messages=picture, max_tokens=5)
    assert refused.value.body["param"] == "messages.0.content"


def test_stream_usage_is_the_last_chunk_only_when_asked(server):
    import json

    def chunks(extra):
        r = httpx.post(server.url + "/v1/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=60,
                       json={"model": "words", "prompt": "The", "max_tokens": 5, "stream": True, **extra})
        return [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]

    asked = chunks({"stream_options": {"include_usage": True}})
    assert all(c["usage"] is None and c["choices"] for c in asked[:-1])
    assert asked[-1]["choices"] == [] and asked[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
    assert all("usage" not in c for c in chunks({}))


def test_images_come_back_as_pngs_of_the_models_size(client):
    from PIL import Image

    answer = client.images.generate(model="digits", prompt="anything", n=3, size="8x8", extra_body={"seed": 1})
    images = [Image.open(io.BytesIO(base64.b64decode(d.b64_json))) for d in answer.data]
    assert [im.size for im in images] == [(8, 8)] * 3
    again = client.images.generate(model="digits", prompt="", n=3, extra_body={"seed": 1})
    assert [d.b64_json for d in again.data] == [d.b64_json for d in answer.data]


def test_music_continues_a_primer_and_comes_back_as_midi_wav_and_piano_roll(server, runs, tmp_path):
    import pretty_midi

    write_melody(tmp_path / "primer.mid", step=3, notes=8)
    primer = base64.b64encode((tmp_path / "primer.mid").read_bytes()).decode()
    r = httpx.post(server.url + "/v1/music/generations", headers={"Authorization": f"Bearer {KEY}"}, timeout=120,
                   json={"model": "tunes", "primer": primer, "seconds": 2, "seed": 1, "temperature": 0.9})
    assert r.status_code == 200, r.text
    (piece,) = r.json()["data"]
    (tmp_path / "out.mid").write_bytes(base64.b64decode(piece["midi_b64"]))
    pm = pretty_midi.PrettyMIDI(str(tmp_path / "out.mid"))
    assert pm.get_end_time() <= 2.0 + 2.0 + 1e-3  # the primer (2 s) and at most the 2 s asked for
    assert base64.b64decode(piece["wav_b64"])[:4] == b"RIFF" and base64.b64decode(piece["piano_roll_png_b64"])[:4] == b"\x89PNG"
    bad = httpx.post(server.url + "/v1/music/generations", headers={"Authorization": f"Bearer {KEY}"}, timeout=30,
                     json={"model": "tunes", "primer": base64.b64encode(b"not midi").decode()})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "primer"
    # 74 bytes whose two notes lie 20,000 s apart: the answer's WAV and piano roll would hold them whole
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    pm.instruments.append(pretty_midi.Instrument(program=0))
    pm.instruments[0].notes = [pretty_midi.Note(velocity=80, pitch=60, start=s, end=s + 0.5) for s in (0.0, 20_000.0)]
    pm.write(str(tmp_path / "far.mid"))
    far = httpx.post(server.url + "/v1/music/generations", headers={"Authorization": f"Bearer {KEY}"}, timeout=30,
                     json={"model": "tunes", "primer": base64.b64encode((tmp_path / "far.mid").read_bytes()).decode()})
    assert far.status_code == 400 and far.json()["error"]["param"] == "primer"
    assert "lasts 20,000 s; a prime may last 600 s at most" in far.json()["error"]["message"]


def test_music_streams_its_notes_as_they_are_written(server, runs, tmp_path):
    import json

    import pretty_midi

    write_melody(tmp_path / "primer.mid", step=3, notes=8)
    body = {"model": "tunes", "primer": base64.b64encode((tmp_path / "primer.mid").read_bytes()).decode(), "seconds": 3,
            "temperature": 1.0}
    post = lambda extra: httpx.post(server.url + "/v1/music/generations", headers={"Authorization": f"Bearer {KEY}"},  # noqa: E731
                                    timeout=120, json={**body, **extra})

    def notes(piece) -> set:
        (tmp_path / "out.mid").write_bytes(base64.b64decode(piece["midi_b64"]))
        pm = pretty_midi.PrettyMIDI(str(tmp_path / "out.mid"))
        return {(n.pitch, round(n.start, 2)) for i in pm.instruments for n in i.notes}

    # A barely trained model writes a note only now and then: take the first seed whose piece has one past the
    # primer's eight.
    seed, whole = next((seed, piece) for seed in range(32) if len(notes(piece := post({"seed": seed}).json()["data"][0])) > 8)
    r = post({"seed": seed, "stream": True})
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    assert r.text.rstrip().endswith("data: [DONE]") and events[-1]["type"] == "music.completed"
    assert events[-1]["midi_b64"] == whole["midi_b64"]  # the same piece as unstreamed, same seed
    streamed = [(n["pitch"], n["start"]) for e in events if e["type"] == "music.notes" for n in e["notes"]]
    final = notes(whole)
    # every new note streamed and the primer's eight not; times are seconds from the piece's start, within what was asked
    assert len(final) == 8 + len(streamed) and {p for p, _ in streamed} <= {p for p, _ in final}
    assert all(0 <= t <= 2.0 + 3.0 for _, t in streamed)
    assert events.index(next(e for e in events if e["type"] == "music.notes")) < len(events) - 1


def test_a_request_gives_the_same_text_alone_and_batched_with_fifteen_others(server):
    def ask(seed: int) -> str:
        r = httpx.post(server.url + "/v1/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=60,
                       json={"model": "words", "prompt": "A dog" if seed % 2 else "The mat", "max_tokens": 30 + seed,
                             "temperature": 1.0, "top_k": 5, "seed": seed})
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["text"]

    alone = ask(3)
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(ask, range(16)))  # prompts of two lengths, 16 rows at different positions
    assert together[3] == alone
    assert len(set(together)) > 8  # and the others are their own


def test_bad_requests_are_openai_errors_naming_the_parameter(server):
    post = lambda body, **kw: httpx.post(server.url + "/v1/completions", json=body, timeout=30,  # noqa: E731
                                         headers=kw.get("headers", {"Authorization": f"Bearer {KEY}"}))
    cases = [
        ({"model": "words", "prompt": "x", "logprobs": 9}, 400, "logprobs"),
        ({"model": "words", "prompt": "x", "logit_bias": {"5": 500}}, 400, "logit_bias"),
        ({"model": "words", "prompt": "x", "logit_bias": {"99999": 1}}, 400, "logit_bias"),
        ({"model": "words", "prompt": "x", "genlab_logprobs_mode": "cooked"}, 400, "genlab_logprobs_mode"),
        ({"model": "words", "prompt": "x", "max_tokens": 100_000}, 400, "max_tokens"),
        ({"model": "words", "prompt": "x", "n": 1000}, 400, "n"),
        ({"model": "words", "prompt": "x", "presence_penalty": 2.5}, 400, "presence_penalty"),
        ({"model": "words", "prompt": "x" * 40_000}, 400, "prompt"),
        ({"prompt": "x"}, 400, "model"),
        ({"model": "../../etc/passwd", "prompt": "x"}, 404, "model"),
        ({"model": "digits", "prompt": "x"}, 400, "model"),
        ({"model": "words", "prompt": "zebra \u2603"}, 400, "prompt"),  # characters the model never saw
    ]
    for body, status, param in cases:
        r = post(body)
        error = r.json()["error"]
        assert r.status_code == status and error["param"] == param, (body, r.text)
        assert set(error) == {"message", "type", "param", "code"} and "Traceback" not in r.text
    assert post({"model": "words", "prompt": "x"}, headers={}).status_code == 401
    assert post({"model": "words", "prompt": "x"}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = httpx.post(server.url + "/v1/completions", content=b"{not json", timeout=30,
                   headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    r = httpx.post(server.url + "/v1/completions", content=b"x" * (5 << 20), timeout=30, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 413
    r = httpx.post(server.url + "/v1/images/generations", json={"model": "digits", "size": "64x64"}, timeout=30,
                   headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "size"
    assert httpx.get(server.url + "/health").json()["status"] == "ok"  # and the server still serves


def _forward_logprobs(run, ids):
    """log-softmax of a plain forward pass of the run's model over `ids`: row i scores token i + 1."""
    import torch

    gen = genlab.load(run, device="cpu")
    with torch.no_grad():
        return gen.model(torch.tensor([ids]))[0].float().log_softmax(-1), gen.tokenizer


@pytest.mark.parametrize("stream", [False, True])
def test_logprobs_are_the_models_own_for_prompt_and_generated_tokens(client, runs, stream):
    prompt = "The cat sat"
    kwargs = dict(model="words", prompt=prompt, max_tokens=10, temperature=0.9, seed=3, logprobs=3, echo=True)
    if stream:
        tokens, values, tops, text = [], [], [], ""
        for chunk in client.completions.create(stream=True, **kwargs):
            for c in chunk.choices:
                text += c.text
                if c.logprobs:
                    tokens += c.logprobs.tokens
                    values += c.logprobs.token_logprobs
                    tops += c.logprobs.top_logprobs
    else:
        choice = client.completions.create(**kwargs).choices[0]
        text, tokens, values, tops = choice.text, choice.logprobs.tokens, choice.logprobs.token_logprobs, choice.logprobs.top_logprobs
    assert text.startswith(prompt) and "".join(tokens) == text and len(tokens) == len(prompt) + 10
    logits, tokenizer = _forward_logprobs(runs["words"], tokenizer_ids := genlab.load(runs["words"]).tokenizer.encode(text))
    assert values[0] is None  # nothing comes before the first prompt token
    expected = [logits[i - 1, tokenizer_ids[i]].item() for i in range(1, len(tokenizer_ids))]
    assert max(abs(a - b) for a, b in zip(values[1:], expected)) < 1e-5
    best = logits[len(prompt) - 1].topk(3)  # the first generated token's alternatives, best first
    assert list(tops[len(prompt)].values()) == pytest.approx(best.values.tolist(), abs=1e-5)


def test_chat_logprobs_raw_and_processed_and_echo_scores_the_prompt(client, server, runs):
    answer = client.chat.completions.create(model="words", messages=[{"role": "user", "content": "The cat"}], max_tokens=8,
                                            temperature=0, logprobs=True, top_logprobs=2)
    content = answer.choices[0].logprobs.content
    assert len(content) == 8 and all(len(c.top_logprobs) == 2 for c in content)
    assert all(c.top_logprobs[0].token == c.token for c in content)  # greedy: the drawn token is the likeliest
    assert all(bytes(c.bytes).decode() == c.token for c in content)
    # processed: top_k 3 leaves three tokens with all the probability
    r = httpx.post(server.url + "/v1/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=60,
                   json={"model": "words", "prompt": "The", "max_tokens": 4, "temperature": 1.0, "top_k": 3, "seed": 1,
                         "logprobs": 5, "genlab_logprobs_mode": "processed"})
    import math

    for top in r.json()["choices"][0]["logprobs"]["top_logprobs"]:
        assert len(top) == 3 and math.isclose(sum(math.exp(v) for v in top.values()), 1.0, rel_tol=1e-5)
    # echo with max_tokens 0: the prompt scored, nothing generated; its perplexity follows
    prompt = "The cat sat on the mat."
    scored = client.completions.create(model="words", prompt=prompt, max_tokens=0, echo=True, logprobs=0).choices[0]
    assert scored.text == prompt and scored.finish_reason == "length"
    ids = genlab.load(runs["words"]).tokenizer.encode(prompt)
    logits, _ = _forward_logprobs(runs["words"], ids)
    mean = sum(logits[i - 1, ids[i]].item() for i in range(1, len(ids))) / (len(ids) - 1)
    assert sum(scored.logprobs.token_logprobs[1:]) / (len(ids) - 1) == pytest.approx(mean, abs=1e-5)
    import math as m

    assert scored.model_extra["genlab_prompt_perplexity"] == pytest.approx(m.exp(-mean), rel=1e-5)


def test_logit_bias_and_openai_penalties_steer_the_draw(client, runs):
    tokenizer = genlab.load(runs["words"]).tokenizer
    ask = lambda **kw: client.completions.create(model="words", prompt="The", max_tokens=20, temperature=0, seed=0,  # noqa: E731
                                                 **kw).choices[0].text
    free = ask()
    favourite = max(set(free), key=free.count)  # what greedy decoding of a small model repeats
    banned = ask(logit_bias={str(tokenizer.encode(favourite)[0]): -100})
    assert favourite not in banned
    other = next(c for c in "tansoi" if c != favourite)
    assert ask(logit_bias={str(tokenizer.encode(other)[0]): 100}) == other * 20
    penalized = ask(frequency_penalty=2.0, presence_penalty=2.0)
    assert max(map(penalized.count, set(penalized))) < max(map(free.count, set(free)))  # no character runs away


def test_a_client_that_disconnects_frees_its_rows(server):
    scheduler = server.app.state.registry.served["words"].scheduler
    with httpx.stream("POST", server.url + "/v1/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=60,
                      json={"model": "words", "prompt": "The", "max_tokens": 4000, "stream": True, "n": 3}) as r:
        lines = r.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))
        assert scheduler.active_rows == 3
    for _ in range(100):  # gone within a few steps of the client leaving
        if scheduler.active_rows == 0:
            break
        time.sleep(0.05)
    assert scheduler.active_rows == 0 and scheduler.room.outstanding == 0


def test_metrics_count_requests_and_tokens(server):
    r = httpx.post(server.url + "/v1/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=60,
                   json={"model": "words", "prompt": "The", "max_tokens": 5})
    assert r.status_code == 200
    text = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    assert 'genlab_generated_tokens_total{model="words"}' in text
    assert 'genlab_requests_total{path="/v1/completions",status="200"}' in text
    assert "genlab_time_to_first_token_seconds_bucket" in text and "genlab_queue_depth" in text
    assert httpx.get(server.url + "/metrics").status_code == 401


def test_a_full_queue_answers_429_with_retry_after(runs):
    from genlab.server import build

    s = Server(build([str(runs["words"])], device="cpu", max_queue=2))
    try:
        with httpx.stream("POST", s.url + "/v1/completions", timeout=60,
                          json={"model": "words", "prompt": "The", "max_tokens": 4000, "stream": True, "n": 2}) as busy:
            lines = busy.iter_lines()  # kept: a dropped iterator closes the connection
            assert next(lines).startswith("data: ")
            r = httpx.post(s.url + "/v1/completions", json={"model": "words", "prompt": "The"}, timeout=30)
            assert r.status_code == 429 and r.headers["retry-after"] == "1"
            assert r.json()["error"]["type"] == "rate_limit_error"
    finally:
        s.stop()


def test_serving_beyond_loopback_needs_a_key_and_names_are_unique(runs, monkeypatch):
    from genlab.server import build, model_names

    monkeypatch.delenv("GENLAB_API_KEY", raising=False)
    with pytest.raises(GenlabError, match="--host 0.0.0.0: serving beyond this machine needs --api-key"):
        build([str(runs["words"])], host="0.0.0.0")
    assert model_names(["a/run", "hf:models/tiny"], ["x=b/run"]) == {"x": "b/run", "run": "a/run", "tiny": "hf:models/tiny"}
    with pytest.raises(GenlabError, match="already served as 'run'"):
        model_names(["a/run", "b/run"])


def test_the_playground_streams_text_and_shows_images_in_a_real_browser(server, tmp_path):
    chromium = require_tools("chromium")["chromium"]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(server.url + "/")
        page.fill("#key", KEY)
        page.dispatch_event("#key", "change")
        page.wait_for_function("document.querySelectorAll('#model option').length == 3")
        page.select_option("#model", "words")
        page.fill("#prompt", "The cat")
        page.click("#generate")
        page.wait_for_function("document.querySelector('#output').textContent.length > 'The cat'.length + 5")
        page.wait_for_function("document.querySelector('#status').textContent.startsWith('done')", timeout=30_000)
        assert page.text_content("#output").startswith("The cat")
        page.screenshot(path=str(tmp_path / "text.png"))
        page.select_option("#model", "digits")
        page.click("#generate")
        page.wait_for_selector("#images img")
        page.wait_for_function("document.querySelector('#images img').naturalWidth == 8")
        assert page.locator("#images img").count() == 8
        page.screenshot(path=str(tmp_path / "images.png"))
        page.wait_for_function("document.querySelector('#status').textContent.endsWith('images')", timeout=30_000)
        page.select_option("#model", "tunes")
        page.click("#generate")
        try:
            page.wait_for_function("document.querySelector('#roll').naturalWidth > 100", timeout=60_000)
        except Exception:  # say what the page said (an error line in #status), not only that time ran out
            pytest.fail(f"no piano roll; the page's status: {page.text_content('#status')!r}")
        assert page.get_attribute("#audio", "src").startswith("data:audio/wav;base64,")
        page.screenshot(path=str(tmp_path / "music.png"))
        browser.close()
    assert (tmp_path / "images.png").stat().st_size > 1000


def test_a_model_name_is_shown_as_text_in_the_playground_never_run_as_markup(runs, tmp_path):
    """A served name is its run folder's name, which may hold markup; the playground used to build its model
    list as HTML, so such a name ran script in the page that holds the key."""
    import shutil

    chromium = require_tools("chromium")["chromium"]
    from playwright.sync_api import sync_playwright

    from genlab.server import build

    name = '<img src=x onerror="document.title=\'pwned\'">'
    shutil.copytree(runs["words"], tmp_path / name)
    s = Server(build([str(tmp_path / name)], device="cpu"))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(s.url + "/")
            page.wait_for_function("document.querySelectorAll('#model option').length == 1")
            assert page.text_content("#model option") == f"{name} (text)"
            assert page.eval_on_selector("#model", "e => e.value") == name
            assert page.locator("#model img").count() == 0 and page.title() != "pwned"
            browser.close()
    finally:
        s.stop()


def test_a_run_that_trains_on_is_swapped_in_between_requests(tmp_path):
    from genlab.server import build

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_corpus())
    cfg = tiny_config(corpus, tmp_path / "live", max_steps=4, eval_interval=2)
    genlab.train(cfg, progress=False)
    s = Server(build([str(tmp_path / "live")], device="cpu"))
    ask = lambda: httpx.post(s.url + "/v1/completions", timeout=60,  # noqa: E731
                             json={"model": "live", "prompt": "The", "max_tokens": 16, "temperature": 0}).json()["choices"][0]["text"]
    info = lambda: httpx.get(s.url + "/v1/models").json()["data"][0]  # noqa: E731
    try:
        before, listed = ask(), info()
        assert before == genlab.load(tmp_path / "live", device="cpu").generate("The", max_new_tokens=16, temperature=0, stop=[])[0].text
        assert listed["genlab_step"] in (2, 4) and listed["genlab_val_loss"] > 0
        genlab.train(dict(cfg, train=dict(cfg["train"], max_steps=60)), progress=False)  # training goes on
        after = genlab.load(tmp_path / "live", device="cpu").generate("The", max_new_tokens=16, temperature=0, stop=[])[0].text
        assert after != before and ask() == after  # the next request runs on the new weights
        assert info()["genlab_step"] > listed["genlab_step"]
    finally:
        s.stop()


def test_weights_that_cannot_be_swapped_in_leave_the_previous_ones_whole(tmp_path, caplog):
    """A run's weights file replaced by another config's (most tensors the same shapes) or by a corrupt one: the
    server goes on with the weights it had, whole. torch copied every tensor that fitted before it complained
    of one that did not, so the server answered from a mix of two models while its log said otherwise."""
    import shutil

    from genlab.server import build

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_corpus())
    genlab.train(tiny_config(corpus, tmp_path / "live", max_steps=20), progress=False)
    other = dict(tiny_config(corpus, tmp_path / "other", max_steps=3), tokenizer={"kind": "bpe", "vocab_size": 300})
    genlab.train(other, progress=False)  # the same blocks; another vocabulary
    s = Server(build([str(tmp_path / "live")], device="cpu", engine_process=False))
    ask = lambda: httpx.post(s.url + "/v1/completions", timeout=60,  # noqa: E731
                             json={"model": "live", "prompt": "The", "max_tokens": 16, "temperature": 0}).json()["choices"][0]["text"]
    try:
        before = ask()
        for replace in (lambda f: shutil.copyfile(tmp_path / "other" / "model.safetensors", f),
                        lambda f: f.write_bytes(b"\x08" + bytes(7) + b'{"a":1}')):
            caplog.clear()
            replace(tmp_path / "live" / "model.safetensors")
            assert ask() == before
            said = [r for r in caplog.records if "serving the previous weights" in r.getMessage()]
            assert len(said) == 1 and said[0].exc_info is None  # one line, no traceback
    finally:
        s.stop()


def test_embeddings_are_the_mean_last_layer_state_through_the_openai_client(client, runs):
    import torch

    texts = ["The cat sat on the mat.", "A dog."]
    answer = client.embeddings.create(model="words", input=texts)  # the client asks for base64 and decodes it
    gen = genlab.load(runs["words"], device="cpu")
    with torch.no_grad():
        expected = [gen.model.hidden(torch.tensor([gen.tokenizer.encode(t)]))[0].mean(0) for t in texts]
    assert [d.index for d in answer.data] == [0, 1] and answer.usage.prompt_tokens == sum(map(len, texts))
    for d, e in zip(answer.data, expected):
        assert len(d.embedding) == gen.config.model.n_embd
        assert torch.allclose(torch.tensor(d.embedding), e, atol=1e-5)
    plain = client.embeddings.create(model="words", input="A dog.", encoding_format="float").data[0].embedding
    assert torch.allclose(torch.tensor(plain), expected[1], atol=1e-5)
    import openai

    with pytest.raises(openai.BadRequestError) as bad:
        client.embeddings.create(model="digits", input="x")
    assert bad.value.body["param"] == "model"


@pytest.fixture(scope="module")
def json_server(tmp_path_factory):
    """A barely trained model of JSON-ish lines, served: what it writes is enforced, not learned."""
    import json
    import random

    from genlab.server import build

    root = tmp_path_factory.mktemp("json")
    rng = random.Random(0)
    names = ["Ann", "Bo", "Cy", "Dee", "Eve", "Flo"]
    lines = [json.dumps({"name": rng.choice(names), "age": rng.randint(1, 99), "ok": rng.random() < 0.5,
                         "day": f"20{rng.randint(10, 29)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"}) for _ in range(400)]
    (root / "corpus.txt").write_text("\n".join(lines) + "\nyes no maybe\nUser: a person\nAssistant: \n")
    genlab.train(tiny_config(root / "corpus.txt", root / "jsonl", max_steps=30), progress=False)
    s = Server(build([str(root / "jsonl")], device="cpu"))
    yield s
    s.stop()


def test_structured_output_always_holds(json_server):
    import json
    import re

    import jsonschema

    post = lambda body: httpx.post(json_server.url + "/v1/completions", timeout=120, json={"model": "jsonl", **body})  # noqa: E731
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "ok": {"type": "boolean"}},
              "required": ["name", "age", "ok"]}
    answers = []
    for seed in range(7):  # 112 sampled answers at temperature 1
        r = post({"prompt": "", "max_tokens": 48, "n": 16, "seed": seed, "temperature": 1.0,
                  "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}})
        assert r.status_code == 200, r.text
        answers += [c["text"] for c in r.json()["choices"]]
    for text in answers:
        jsonschema.validate(json.loads(text), schema)  # every one parses and validates
    days = post({"prompt": "", "max_tokens": 12, "n": 16, "seed": 1, "genlab_regex": r"\d{4}-\d{2}-\d{2}"}).json()["choices"]
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", c["text"]) and c["finish_reason"] == "stop" for c in days)
    picked = post({"prompt": "", "max_tokens": 8, "n": 16, "seed": 2, "genlab_choice": ["yes", "no", "maybe"]}).json()["choices"]
    assert {c["text"] for c in picked} <= {"yes", "no", "maybe"}
    free = post({"prompt": "", "max_tokens": 40, "n": 4, "seed": 3, "response_format": {"type": "json_object"},
                 "stream": True})
    texts = ["", "", "", ""]
    for line in free.text.splitlines():
        if line.startswith("data: {"):
            for c in json.loads(line[6:])["choices"]:
                texts[c["index"]] += c["text"]
    assert all(isinstance(json.loads(t), dict) for t in texts)  # streamed too
    for body, param in [({"genlab_regex": "\u2603+"}, "genlab_regex"),  # a character the model never saw
                        ({"genlab_regex": "[0-9]{30}", "max_tokens": 10}, "max_tokens"),  # cannot fit
                        ({"genlab_regex": "a", "genlab_choice": ["a"]}, "genlab_choice"),
                        ({"response_format": {"type": "json_schema"}}, "response_format")]:
        r = post({"prompt": "", **body})
        assert r.status_code == 400 and r.json()["error"]["param"] == param, (body, r.text)


def test_chat_json_mode_through_the_openai_client(json_server):
    import json

    from openai import OpenAI

    client = OpenAI(base_url=json_server.url + "/v1", api_key="none", max_retries=0, timeout=60)
    answer = client.chat.completions.create(model="jsonl", messages=[{"role": "user", "content": "a person"}], max_tokens=40,
                                            response_format={"type": "json_object"}, seed=5)
    assert isinstance(json.loads(answer.choices[0].message.content), dict)


def test_a_diffusion_model_streams_its_images_as_they_sharpen(tmp_path):
    import json

    from genlab.server import build

    genlab.train({"task": "image", "out": str(tmp_path / "ddpm"), "data": {"source": "digits"},
                  "model": {"name": "ddpm", "channels": 8, "heads": 1, "timesteps": 50},
                  "train": {"max_steps": 2, "batch_size": 16, "eval_interval": 1000, "progress": False}}, progress=False)
    s = Server(build([str(tmp_path / "ddpm")], device="cpu"))
    try:
        body = {"model": "ddpm", "prompt": "7", "n": 2, "seed": 4, "steps": 6}
        whole = httpx.post(s.url + "/v1/images/generations", json=body, timeout=60).json()["data"]
        r = httpx.post(s.url + "/v1/images/generations", json={**body, "stream": True, "partial_images": 2}, timeout=60)
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
        assert r.text.rstrip().endswith("data: [DONE]")
        partial = [e for e in events if e["type"] == "image_generation.partial_image"]
        done = [e for e in events if e["type"] == "image_generation.completed"]
        assert [(e["genlab_step"], e["image_index"]) for e in partial] == [(2, 0), (2, 1), (4, 0), (4, 1)]
        assert [e["b64_json"] for e in sorted(done, key=lambda e: e["image_index"])] == [d["b64_json"] for d in whole]
        assert partial[0]["b64_json"] != done[0]["b64_json"]  # the frames differ as the noise goes
    finally:
        s.stop()


def test_an_image_request_whose_client_leaves_mid_sampling_stops_and_frees_the_model(tmp_path):
    """The model takes one request at a time. A diffusion request of 1,000 steps whose client leaves after half
    a second used to sample to its end for nobody, holding every request behind it; now its loop stops at the
    next step, so the next request is answered at once, streamed or not."""
    from genlab.server import build

    genlab.train({"task": "image", "out": str(tmp_path / "ddpm"), "data": {"source": "digits"},
                  "model": {"name": "ddpm", "channels": 16, "heads": 1, "timesteps": 1000},
                  "train": {"max_steps": 1, "batch_size": 16, "eval_interval": 1000, "progress": False}}, progress=False)
    s = Server(build([str(tmp_path / "ddpm")], device="cpu"))
    try:
        quick = {"model": "ddpm", "n": 1, "seed": 1, "steps": 2}
        slow = {"model": "ddpm", "n": 16, "seed": 2, "steps": 1000}
        for stream in (False, True):
            with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes its connection
                httpx.post(s.url + "/v1/images/generations", json={**slow, "stream": stream, "partial_images": 0},
                           timeout=httpx.Timeout(60, read=0.5))
            t = time.perf_counter()
            httpx.post(s.url + "/v1/images/generations", json=quick, timeout=120).raise_for_status()
            waited = time.perf_counter() - t
            # It waited 0.04 s; behind the abandoned request's 1,000 steps of 16 images, 8 s.
            assert waited < 2.0, (stream, waited)
    finally:
        s.stop()
