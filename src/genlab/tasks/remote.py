"""`remote:URL#MODEL`: a model behind any OpenAI-compatible endpoint, as a sequence generator.

`genlab sample remote:http://127.0.0.1:8000/v1#poet` and `genlab eval-code remote:...` use it like a run (URL is the
base URL the openai client takes; MODEL the name the server serves). The key is read from the environment variable
that GENLAB_REMOTE_KEY_ENV names (OPENAI_API_KEY when it names none); it is never printed or written anywhere.
Requests are retried with exponential backoff on 429 and 5xx (honouring Retry-After: the openai client's own
retries), time out after `timeout` seconds, and go one at a time.

Only what the caller sets is sent: a remote model samples with its server's own defaults otherwise.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

from genlab.core.config import validate_config
from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write_text
from genlab.core.progress import progress_bar
from genlab.core.samples import TextSample
from genlab.tasks.code import CodeGenerator, PYTHON_STOPS

PREFIX = "remote:"
RETRIES = 5
TIMEOUT = 120.0
SCORE_PIECE_CHARS = 2_000  # a prompt scored in one request: well under any server's prompt limit
TEACHER_BATCH = 8  # samples per request when a remote teacher writes a student's corpus
# SamplingParams field -> the request field of OpenAI's completions API (genlab's own server takes the extensions).
REQUEST_FIELDS = {"max_new_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p",
                  "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty"}
EXTENSIONS = {"top_k": "top_k", "repetition_penalty": "repetition_penalty"}


def parse_remote(spec: str) -> tuple[str, str]:
    """`remote:URL#MODEL` -> (URL, MODEL)."""
    url, _, model = spec.removeprefix(PREFIX).partition("#")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a malformed port)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and bool(model)
    except ValueError:
        valid = False
    if not valid:
        raise GenlabError(f"{spec[:200]}: a remote model is remote:URL#MODEL, URL an http(s) base URL (e.g. "
                          "remote:http://127.0.0.1:8000/v1#poet)")
    return url, model


class RemoteGenerator(CodeGenerator):
    """Text and code from an OpenAI-compatible server (genlab serve, vLLM, llama.cpp, a hosted API)."""

    modality = "text"

    def __init__(self, spec: str, timeout: float = TIMEOUT):
        import openai

        self.url, self.name = parse_remote(spec)
        self.run, self.device = None, "remote"
        self.config = validate_config({"task": "text"})  # only its [sample] prompt is read: the default prompt ""
        key_env = os.environ.get("GENLAB_REMOTE_KEY_ENV", "OPENAI_API_KEY")
        self.client = openai.OpenAI(base_url=self.url, api_key=os.environ.get(key_env) or "none", timeout=timeout,
                                    max_retries=RETRIES)

    def _request(self, prompt: str, n: int, seed: int | None, stop, params: dict) -> dict:
        body = {REQUEST_FIELDS[k]: v for k, v in params.items() if k in REQUEST_FIELDS and v is not None}
        extra = {EXTENSIONS[k]: v for k, v in params.items() if k in EXTENSIONS and v is not None}
        unknown = [k for k, v in params.items() if v is not None and k not in REQUEST_FIELDS and k not in EXTENSIONS]
        if unknown:
            raise GenlabError(f"{PREFIX}{self.url}#{self.name}: {', '.join(unknown)} cannot be asked of a remote model")
        if stop:
            body["stop"] = list(stop)[:4]  # OpenAI's limit
        if seed is not None:
            body["seed"] = seed
        return {"model": self.name, "prompt": prompt, "n": n, **body, **({"extra_body": extra} if extra else {})}

    def _call(self, request: dict, stream: bool = False):
        import openai

        try:
            return self.client.completions.create(**request, stream=stream)
        except openai.AuthenticationError:
            raise GenlabError(f"{self.url}: the server refused the key (401); put it in a variable and name that "
                              "variable in GENLAB_REMOTE_KEY_ENV") from None
        except openai.NotFoundError:
            raise GenlabError(f"{self.url}: no model {self.name!r} there (GET {self.url}/models lists them)") from None
        except openai.APIConnectionError:
            raise GenlabError(f"{self.url}: no answer (is the server running, and is this its /v1 base URL?)") from None
        except openai.APIStatusError as e:
            retried = f" after {RETRIES} retries" if e.status_code == 429 or e.status_code >= 500 else ""
            raise GenlabError(f"{self.url}: the server answered {e.status_code}{retried} ({str(e.message)[:200]})") from None

    def generate(self, prompt=None, n: int = 1, seed: int | None = None, stop: list[str] | None = None,
                 use_cache: bool = True, **params) -> list[TextSample]:
        prompt = prompt or ""
        answer = self._call(self._request(prompt, n, seed, self.default_stop() if stop is None else stop, params))
        choices = sorted(answer.choices, key=lambda c: c.index)
        samples = [TextSample(c.text, [], c.finish_reason or "length") for c in choices]
        for sample in samples:
            sample.prompt = prompt
        return samples

    def stream(self, prompt=None, seed: int | None = None, stop: list[str] | None = None, use_cache: bool = True,
               **params) -> Iterator[str]:
        request = self._request(prompt or "", 1, seed, self.default_stop() if stop is None else stop, params)
        for chunk in self._call(request, stream=True):
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
            piece = text[start: start + piece_chars]
            answer = self._call({"model": self.name, "prompt": piece, "max_tokens": 0, "echo": True, "logprobs": 0})
            scored = answer.choices[0].logprobs if answer.choices else None
            if scored is None or not scored.token_logprobs:
                raise GenlabError(f"{PREFIX}{self.url}#{self.name}: the server gives no prompt logprobs (echo with "
                                  "logprobs), so its loss cannot be measured")
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
        request = self._request("", 1, seed, [], {"max_new_tokens": max_new_tokens, "temperature": 1.0, "top_p": 1.0})
        start = time.perf_counter()
        answer = self._call(request)
        seconds = time.perf_counter() - start
        tokens = answer.usage.completion_tokens if answer.usage else 0
        return tokens / seconds

    def evaluate(self, data: str | None = None, **options) -> dict:
        raise GenlabError(f"{PREFIX}{self.url}#{self.name}: a remote model has no held-out split here; "
                          "genlab eval-code measures its pass@k")


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
