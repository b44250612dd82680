"""A model behind an OpenAI-compatible server (`remote:URL#MODEL`: genlab serve, vLLM, llama.cpp, a hosted API)
and the one way genlab calls it: the openai client with its own retries (exponential backoff on 429 and 5xx,
honouring Retry-After), a timeout, a key read from the environment variable GENLAB_REMOTE_KEY_ENV names
(OPENAI_API_KEY when it names none; never printed or written), and every failure as one line.

The openai package is imported when an endpoint is first used, not with this module: most runs never call one.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from genlab.core.errors import GenlabError

PREFIX = "remote:"
RETRIES = 5
TIMEOUT = 120.0


class Unavailable(GenlabError):
    """The server did not answer, or answered that it could not then (429, 5xx) after every retry: a state of
    the server, not a refusal of what was asked."""


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


class Endpoint:
    def __init__(self, spec: str, timeout: float = TIMEOUT):
        import openai

        self.url, self.name = parse_remote(spec)
        key_env = os.environ.get("GENLAB_REMOTE_KEY_ENV", "OPENAI_API_KEY")
        self.client = openai.OpenAI(base_url=self.url, api_key=os.environ.get(key_env) or "none", timeout=timeout,
                                    max_retries=RETRIES)

    @property
    def spec(self) -> str:
        return f"{PREFIX}{self.url}#{self.name}"

    def request(self, prompt, n: int, seed: int | None, stop, params: dict) -> dict:
        """A completions request from genlab's sampling fields (only those given: the server's defaults do the rest)."""
        body = {REQUEST_FIELDS[k]: v for k, v in params.items() if k in REQUEST_FIELDS and v is not None}
        extra = {EXTENSIONS[k]: v for k, v in params.items() if k in EXTENSIONS and v is not None}
        unknown = [k for k, v in params.items() if v is not None and k not in REQUEST_FIELDS and k not in EXTENSIONS]
        if unknown:
            raise GenlabError(f"{self.spec}: {', '.join(unknown)} cannot be asked of a remote model")
        if stop:
            body["stop"] = list(stop)[:4]  # OpenAI's limit
        if seed is not None:
            body["seed"] = seed
        return {"model": self.name, "prompt": prompt, "n": n, **body, **({"extra_body": extra} if extra else {})}

    def complete(self, request: dict, stream: bool = False):
        """The server's answer (or its stream of chunks); GenlabError in one line when it refuses or is not there."""
        import openai

        try:
            return self.client.completions.create(**request, stream=stream)
        except openai.AuthenticationError:
            raise GenlabError(f"{self.url}: the server refused the key (401); put it in a variable and name that "
                              "variable in GENLAB_REMOTE_KEY_ENV") from None
        except openai.NotFoundError:
            raise GenlabError(f"{self.url}: no model {self.name!r} there (GET {self.url}/models lists them)") from None
        except openai.APIConnectionError:
            raise Unavailable(f"{self.url}: no answer (is the server running, and is this its /v1 base URL?)") from None
        except openai.APIStatusError as e:
            busy = e.status_code == 429 or e.status_code >= 500
            retried = f" after {RETRIES} retries" if busy else ""
            message = f"{self.url}: the server answered {e.status_code}{retried} ({str(e.message)[:200]})"
            raise (Unavailable if busy else GenlabError)(message) from None

    def prompt_logprobs(self, prompts: list[str], top: int) -> list:
        """Each prompt's tokens with their log-probabilities and `top` alternatives (OpenAI's legacy `logprobs`
        shape: tokens, token_logprobs, top_logprobs), in prompt order, from `echo` with nothing generated."""
        answer = self.complete({"model": self.name, "prompt": prompts, "max_tokens": 0, "echo": True, "logprobs": top})
        scored = [c.logprobs for c in sorted(answer.choices, key=lambda c: c.index)]
        if len(scored) != len(prompts) or any(s is None or not s.token_logprobs for s in scored):
            raise GenlabError(f"{self.spec}: the server gives no prompt logprobs (echo with logprobs)")
        return scored
