"""The OpenAI-style requests the server accepts, with their limits, and its error shape.

A parameter the server does not implement is refused by name (400), never ignored: each model forbids
unknown fields. Defaults follow OpenAI's (temperature 1, top_p 1), not the run's sample section.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# Limits a request may not pass (each a 400 naming the parameter).
MAX_TOKENS = 4096
MAX_N = 16
MAX_PROMPT_CHARS = 32_000
MAX_IMAGES = 16
MAX_MUSIC_SECONDS = 120.0
MAX_STOP = 4
MAX_TOP_LOGPROBS = 20
MAX_LOGIT_BIAS = 300  # tokens a request may bias, as OpenAI allows: each is applied at every step of its rows
MAX_EMBEDDING_INPUTS = 64
MAX_PROMPTS = 64
MAX_MESSAGES = 1000
MAX_SEED = 2**63 - 1


class APIError(Exception):
    """An answer in OpenAI's error shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error", headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class StreamOptions(Strict):
    include_usage: bool = False


class JSONSchemaFormat(Strict):
    name: str = "answer"
    schema_: dict = Field(default_factory=dict, alias="schema")
    description: str | None = None
    strict: bool | None = None


class ResponseFormat(Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class Sampling(Strict):
    """What completions and chat share."""

    model: str
    max_tokens: int | None = Field(None, ge=0, le=MAX_TOKENS)  # 0: nothing generated (with echo: score the prompt)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)  # OpenAI's newer name (LangChain sends it)
    # Sampling fields left out keep the run's own (its [sample] section), as `genlab sample` does, the way vLLM
    # applies a model's generation_config: one set of defaults per model, not OpenAI's 1.0 for every model.
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0, le=1_000_000)  # extension: 0 = off
    repetition_penalty: float | None = Field(None, ge=0.01, le=10)  # extension: 1 = off
    n: int = Field(1, ge=1, le=MAX_N)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    user: str | None = Field(None, max_length=256)  # OpenAI's end-user tag: accepted, not used
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None  # token id (as a string) -> bias in [-100, 100]
    # Extension: log-probabilities of the model's own distribution ("raw"), or of the one tokens are drawn
    # from after logit_bias, penalties, temperature, top-k and top-p ("processed").
    genlab_logprobs_mode: Literal["raw", "processed"] = "raw"
    # Structured output (enforced by masking tokens while decoding): OpenAI's response_format, or the extensions
    # genlab_regex (the output matches this regular expression) and genlab_choice (the output is one of these).
    response_format: ResponseFormat | None = None
    genlab_regex: str | None = Field(None, max_length=2000)
    genlab_choice: list[Annotated[str, Field(min_length=1, max_length=500)]] | None = Field(None, min_length=1, max_length=100)

    @field_validator("stop")
    @classmethod
    def _stops(cls, v):
        if v is None:
            return None  # left out: the run's own stops (a code run's, a task's), as every omitted sampling field
        stops = [v] if isinstance(v, str) else v
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop strings")
        return stops

    @field_validator("logit_bias")
    @classmethod
    def _bias(cls, v):
        if v is not None and len(v) > MAX_LOGIT_BIAS:
            raise ValueError(f"at most {MAX_LOGIT_BIAS} tokens, not {len(v)}")
        for key, bias in (v or {}).items():
            if not re.fullmatch(r"[0-9]{1,9}", key):
                raise ValueError(f"keys are token ids, not {key!r}")
            if not -100 <= bias <= 100:
                raise ValueError(f"bias {bias} for token {key} is outside [-100, 100]")
        return v

    def bias_pairs(self, vocab_size: int) -> tuple[tuple[int, float], ...]:
        pairs = tuple((int(k), float(b)) for k, b in (self.logit_bias or {}).items())
        bad = [i for i, _ in pairs if i >= vocab_size]
        if bad:
            raise APIError(400, f"logit_bias: token {bad[0]} is not in this model's vocabulary ({vocab_size} tokens)",
                           "logit_bias", "invalid_value")
        return pairs

    def token_budget(self, default: int) -> int:
        budget = self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
        return default if budget is None else budget


class CompletionRequest(Sampling):
    prompt: str | list[str] = ""
    logprobs: int | None = Field(None, ge=0, le=5)  # OpenAI's legacy shape: the drawn token's and this many more
    echo: bool = False  # the prompt comes back before the completion (with its logprobs, where asked)

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v):
        prompts = [v] if isinstance(v, str) else v
        if not prompts or len(prompts) > MAX_PROMPTS or any(len(p) > MAX_PROMPT_CHARS for p in prompts):
            raise ValueError(f"give one prompt or a list of at most {MAX_PROMPTS}, each at most {MAX_PROMPT_CHARS} characters")
        return prompts


class Message(Strict):
    role: Literal["system", "user", "assistant", "developer"]
    content: str  # OpenAI's clients also send a list of text parts: read as one text
    name: str | None = Field(None, max_length=256)

    @field_validator("content", mode="before")
    @classmethod
    def _joined(cls, v):
        if not isinstance(v, list):
            return v
        if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) and len(p) == 2 for p in v):
            raise ValueError("a list of content parts must hold text parts only ({\"type\": \"text\", \"text\": ...}): "
                             "this server's models read text")
        return "".join(p["text"] for p in v)


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)

    @field_validator("messages")
    @classmethod
    def _length(cls, v):
        if sum(len(m.content) for m in v) > MAX_PROMPT_CHARS:
            raise ValueError(f"the messages hold more than {MAX_PROMPT_CHARS} characters")
        return v


class ImageRequest(Strict):
    model: str
    prompt: str = Field("", max_length=1000)
    n: int = Field(1, ge=1, le=MAX_IMAGES)
    size: str | None = None  # "WxH"; must be the model's own
    response_format: Literal["b64_json"] = "b64_json"
    seed: int | None = Field(None, ge=0, le=MAX_SEED)  # extension
    steps: int | None = Field(None, ge=1, le=1000)  # extension: diffusion sampling steps
    stream: bool = False  # Server-Sent Events: partial images as a diffusion model denoises, then the finished ones
    partial_images: int = Field(3, ge=0, le=20)  # partial frames per image when streaming
    user: str | None = Field(None, max_length=256)


class EmbeddingRequest(Strict):
    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = Field(None, max_length=256)

    @field_validator("input")
    @classmethod
    def _inputs(cls, v):
        texts = [v] if isinstance(v, str) else v
        if not texts or len(texts) > MAX_EMBEDDING_INPUTS or any(not t or len(t) > MAX_PROMPT_CHARS for t in texts):
            raise ValueError(f"give 1 to {MAX_EMBEDDING_INPUTS} non-empty texts, each at most {MAX_PROMPT_CHARS} characters")
        return texts


class MusicRequest(Strict):
    model: str
    primer: str | None = None  # a MIDI file, base64
    seconds: float = Field(10.0, gt=0, le=MAX_MUSIC_SECONDS)
    temperature: float | None = Field(None, ge=0, le=2)  # left out: the run's own, as for completions
    top_k: int | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=4)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    stream: bool = False  # Server-Sent Events: notes as they are written, then the finished pieces
    user: str | None = Field(None, max_length=256)


def lone_surrogate(value, path: str = "") -> str | None:
    """The path of the first string in a parsed JSON value that holds a lone surrogate (not text), or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "body"
    elif isinstance(value, dict):
        for k, v in value.items():
            found = lone_surrogate(k, path) or lone_surrogate(v, f"{path}.{k}" if path else str(k))
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = lone_surrogate(v, f"{path}.{i}")
            if found:
                return found
    return None


def parse(model: type[BaseModel], body) -> BaseModel:
    """`body` as `model`, or an APIError naming the first parameter that is wrong."""
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    bad = lone_surrogate(body)
    if bad:
        raise APIError(400, f"{bad}: holds a lone surrogate escape (\\ud800-\\udfff), which is not text", bad, "invalid_value")
    try:
        return model.model_validate(body)
    except ValidationError as e:
        err = e.errors()[0]
        param = ".".join(str(p) for p in err["loc"]) or None
        if err["type"] == "extra_forbidden":
            raise APIError(400, f"unsupported parameter: {param}", param, "unsupported_parameter") from None
        if err["type"] == "missing":
            raise APIError(400, f"missing required parameter: {param}", param, "missing_parameter") from None
        message = err["msg"].removeprefix("Value error, ")
        raise APIError(400, f"{param}: {message}", param, "invalid_value") from None


BODIES = {"/v1/completions": CompletionRequest, "/v1/chat/completions": ChatRequest, "/v1/embeddings": EmbeddingRequest,
          "/v1/images/generations": ImageRequest, "/v1/music/generations": MusicRequest}


def openapi_bodies(path: str, models: list[str]) -> dict:
    """The OpenAPI request body of an endpoint, from its model (definitions inlined: an operation has no
    components of its own; `model` one of the served names), so clients and fuzzers (schemathesis) know what
    each endpoint takes."""
    schema = BODIES[path].model_json_schema()
    schema["properties"]["model"]["enum"] = models
    defs = schema.pop("$defs", {})

    def inline(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline(schema)}}}}
