"""The OpenAI-style requests the server accepts, with their limits, and its error shape.

A parameter the server does not implement is refused by name (400), never ignored: each model forbids
unknown fields. Defaults follow OpenAI's (temperature 1, top_p 1), not the run's sample section.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# Limits a request may not pass (each a 400 naming the parameter).
MAX_TOKENS = 4096
MAX_N = 16
MAX_PROMPT_CHARS = 32_000
MAX_IMAGES = 16
MAX_MUSIC_SECONDS = 120.0
MAX_STOP = 4
MAX_TOP_LOGPROBS = 20
MAX_EMBEDDING_INPUTS = 64


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
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)  # extension: 0 = off
    repetition_penalty: float = Field(1.0, gt=0, le=10)  # extension: 1 = off
    n: int = Field(1, ge=1, le=MAX_N)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None  # OpenAI's end-user tag: accepted, not used
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
    genlab_choice: list[str] | None = Field(None, min_length=1, max_length=100)

    def pattern(self) -> tuple[str, str] | None:
        """(the regular expression the output must match, the parameter it came from), or None."""
        import json

        asked = [name for name, v in (("response_format", self.response_format and self.response_format.type != "text"),
                                      ("genlab_regex", self.genlab_regex), ("genlab_choice", self.genlab_choice)) if v]
        if len(asked) > 1:
            raise APIError(400, f"{asked[1]}: give one of response_format, genlab_regex and genlab_choice", asked[1])
        if not asked:
            return None
        if asked[0] == "genlab_regex":
            return self.genlab_regex, "genlab_regex"
        if asked[0] == "genlab_choice":
            return "(" + "|".join(regex_literal(c) for c in self.genlab_choice) + ")", "genlab_choice"
        from outlines_core.json_schema import build_regex_from_schema

        f = self.response_format
        if f.type == "json_schema" and f.json_schema is None:
            raise APIError(400, "response_format: json_schema needs its json_schema.schema", "response_format")
        schema = {"type": "object"} if f.type == "json_object" else f.json_schema.schema_
        try:
            return build_regex_from_schema(json.dumps(schema)), "response_format"
        except (ValueError, TypeError, RuntimeError) as e:
            raise APIError(400, f"response_format: the schema is not supported ({str(e).splitlines()[0][:160]})",
                           "response_format", "invalid_value") from None

    @field_validator("stop")
    @classmethod
    def _stops(cls, v):
        stops = [v] if isinstance(v, str) else (v or [])
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop strings")
        return stops

    @field_validator("logit_bias")
    @classmethod
    def _bias(cls, v):
        for key, bias in (v or {}).items():
            if not key.isdigit():
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


def regex_literal(text: str) -> str:
    """`text` as a regular expression that matches only itself."""
    return "".join("\\" + c if c in "\\.^$|?*+()[]{}-" else c for c in text)


class CompletionRequest(Sampling):
    prompt: str | list[str] = ""
    logprobs: int | None = Field(None, ge=0, le=5)  # OpenAI's legacy shape: the drawn token's and this many more
    echo: bool = False  # the prompt comes back before the completion (with its logprobs, where asked)

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v):
        prompts = [v] if isinstance(v, str) else v
        if not prompts or any(len(p) > MAX_PROMPT_CHARS for p in prompts):
            raise ValueError(f"give one prompt or a list of them, each at most {MAX_PROMPT_CHARS} characters")
        return prompts


class Message(Strict):
    role: Literal["system", "user", "assistant", "developer"]
    content: str
    name: str | None = None


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
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
    seed: int | None = None  # extension
    steps: int | None = Field(None, ge=1, le=1000)  # extension: diffusion sampling steps
    stream: bool = False  # Server-Sent Events: partial images as a diffusion model denoises, then the finished ones
    partial_images: int = Field(3, ge=0, le=20)  # partial frames per image when streaming
    user: str | None = None


class EmbeddingRequest(Strict):
    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None

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
    temperature: float = Field(1.0, ge=0, le=2)
    top_k: int = Field(0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1, le=4)
    seed: int | None = None
    stream: bool = False  # Server-Sent Events: notes as they are written, then the finished pieces
    user: str | None = None


def parse(model: type[BaseModel], body) -> BaseModel:
    """`body` as `model`, or an APIError naming the first parameter that is wrong."""
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
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
