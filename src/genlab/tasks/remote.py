"""`remote:URL#MODEL`: a model behind any OpenAI-compatible endpoint, as a sequence generator.

`genlab sample remote:http://127.0.0.1:8000/v1#poet`, `genlab eval-code remote:...` and `genlab compare` use it like
a run (URL is the base URL the openai client takes; MODEL the name the server serves); `genlab distill --teacher
remote:...` learns from its samples and, where its tokens are the student's, from its top_logprobs. How it is
called (key, retries, timeouts, one-line errors): sampling/endpoint.py. Requests go one at a time.

Only what the caller sets is sent: a remote model samples with its server's own defaults otherwise.
"""

from __future__ import annotations

import hashlib
import sys
import math
import time
from pathlib import Path
from typing import Iterator


from genlab.core.config import validate_config
from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write_text
from genlab.core.progress import progress_bar
from genlab.core.samples import TextSample
from genlab.sampling.endpoint import TIMEOUT, Endpoint, Unavailable, parse_remote
from genlab.tasks.code import CodeGenerator, PYTHON_STOPS

SCORE_PIECE_CHARS = 2_000  # a prompt scored in one request: well under any server's prompt limit
TEACHER_BATCH = 8  # samples per request when a remote teacher writes a student's corpus


class RemoteGenerator(CodeGenerator):
    """Text and code from an OpenAI-compatible server (genlab serve, vLLM, llama.cpp, a hosted API)."""

    modality = "text"

    def __init__(self, spec: str, timeout: float = TIMEOUT):
        self.endpoint = Endpoint(spec, timeout)
        self.url, self.name = self.endpoint.url, self.endpoint.name
        self.run, self.device = None, "remote"
        self.config = validate_config({"task": "text"})  # only its [sample] prompt is read: the default prompt ""

    def generate(self, prompt=None, n: int = 1, seed: int | None = None, stop: list[str] | None = None,
                 use_cache: bool = True, **params) -> list[TextSample]:
        prompt = prompt or ""
        answer = self.endpoint.complete(self.endpoint.request(prompt, n, seed, self.default_stop() if stop is None else stop, params))
        choices = sorted(answer.choices, key=lambda c: c.index)
        samples = [TextSample(c.text, [], c.finish_reason or "length") for c in choices]
        for sample in samples:
            sample.prompt = prompt
        return samples

    def stream(self, prompt=None, seed: int | None = None, stop: list[str] | None = None, use_cache: bool = True,
               **params) -> Iterator[str]:
        request = self.endpoint.request(prompt or "", 1, seed, self.default_stop() if stop is None else stop, params)
        for chunk in self.endpoint.complete(request, stream=True):
            for choice in chunk.choices:
                if choice.text:
                    yield choice.text

    def default_stop(self) -> list[str]:
        return []  # a remote model may write prose: the caller's stops only

    def complete_function(self, signature_and_docstring: str, n: int = 1, seed: int | None = None, **params) -> list[str]:
        # OpenAI's API takes at most 4 stop strings: the first four of Python's (the body is cut at its end anyway).
        return super().complete_function(signature_and_docstring, n, seed, stop=list(PYTHON_STOPS)[:4], **params)

    def bits_per_char(self, text: str, piece_chars: int = SCORE_PIECE_CHARS) -> dict:
        """Bits per character (and per UTF-8 byte) of `text` under the remote model, from its prompt's token logprobs (`echo` with
        `logprobs`, as genlab serve, vLLM and OpenAI's legacy completions give them), in pieces of at most
        `piece_chars` characters; a piece's first token has no logprob and is left out of both sums."""
        nats, chars, size = 0.0, 0, 0
        for start in range(0, len(text), piece_chars):
            try:
                (scored,) = self.endpoint.prompt_logprobs([text[start: start + piece_chars]], 0)
            except GenlabError as e:
                raise GenlabError(f"{e}, so its loss cannot be measured") from None
            for token, value in zip(scored.tokens, scored.token_logprobs):
                if value is not None:
                    nats -= value
                    chars += len(token)
                    size += len(token.encode("utf-8", "surrogatepass"))
        bits = nats / math.log(2)
        return {"bits_per_char": bits / max(chars, 1), "bits_per_byte": bits / max(size, 1), "scored_chars": chars}

    def decoding_rate(self, max_new_tokens: int = 200, seed: int = 0) -> float:
        """Tokens per second of one completion from an empty prompt, at the model's own distribution, as the
        client sees it (the network and the server's queue included)."""
        request = self.endpoint.request("", 1, seed, [], {"max_new_tokens": max_new_tokens, "temperature": 1.0, "top_p": 1.0})
        start = time.perf_counter()
        answer = self.endpoint.complete(request)
        seconds = time.perf_counter() - start
        tokens = answer.usage.completion_tokens if answer.usage else 0
        return tokens / seconds

    def evaluate(self, data: str | None = None, **options) -> dict:
        raise GenlabError(f"{self.endpoint.spec}: a remote model has no held-out split here; "
                          "genlab eval-code measures its pass@k")


def soft_targets_offered(spec: str, corpus: Path, top: int) -> bool:
    """Whether a remote teacher can give a character student soft targets: asked for the logprobs of the start of
    its own corpus, it answers with `top` alternatives per token, one character each. When not, say so once:
    the student then learns from the teacher's samples alone (sequence-level distillation)."""
    text = corpus.read_text(encoding="utf-8")[:200]
    try:
        (scored,) = Endpoint(spec).prompt_logprobs([text], top)
        offered = all(len(t) == 1 for t in scored.tokens) and "".join(scored.tokens) == text and any(scored.top_logprobs[1:])
    except Unavailable:  # no answer is not a "no": the run stops rather than learn another way
        raise
    except GenlabError:  # refused: this server gives no such logprobs
        offered = False
    if not offered:
        print(f"{spec}: no per-character top_logprobs from this server; the student learns from its samples alone",
              file=sys.stderr)
    return offered


def teacher_corpus(spec: str, samples: int, max_new_tokens: int, seed: int, cache: Path, progress: bool = True) -> Path:
    """Sequence-level distillation's data (Kim and Rush, 2016): `samples` texts the remote teacher writes from an
    empty prompt, row i drawn with seed + i, as one text file in the cache (documents separated by a blank line).
    Written once per teacher, count, length and seed; the student then trains on it as on any text."""
    url, model = parse_remote(spec)
    key = hashlib.sha256(f"{url}#{model}|{samples}|{max_new_tokens}|{seed}".encode()).hexdigest()[:16]
    dest = Path(cache) / "teacher-samples" / f"{key}.txt"
    if dest.is_file():
        return dest
    teacher = RemoteGenerator(spec)
    texts = []
    bar = progress_bar(total=samples, desc=f"sampling the teacher {model}", unit="sample", enabled=progress)
    for start in range(0, samples, TEACHER_BATCH):
        n = min(TEACHER_BATCH, samples - start)
        texts += [s.text for s in teacher.generate("", n=n, seed=seed + start, max_new_tokens=max_new_tokens)]
        bar.update(n)
    bar.close()
    if not any(t.strip() for t in texts):
        raise GenlabError(f"{spec}: the teacher wrote nothing in {samples} samples")
    atomic_write_text(dest, "\n\n".join(texts))
    return dest
