"""Structured output: a request's response_format, genlab_regex or genlab_choice as a compiled Pattern.

Every JSON Schema keyword is either enforced or refused (a 400 that names it): outlines-core turns a
schema into a regular expression but silently drops what it cannot express (integer bounds,
uniqueItems, a contradictory allOf, recursion), so the schema is walked first. Formats and integer
bounds become expressions of our own (ASCII digits, real calendar days, exact ranges).

Patterns compile off the event loop: an automaton in a process with a time and a memory budget
(sampling/automaton.py), or past the budget llguidance's lazy matcher (sampling/constraints.py);
compiled patterns and failures are cached per model, bounded in bytes.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import OrderedDict

from genlab.core.errors import GenlabError
from genlab.sampling.constraints import LazyPattern, Pattern
from genlab.server.schemas import APIError
from genlab.server.worker import Busy, ModelWorker

ANNOTATIONS = {"title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly",
               "writeOnly", "$defs", "definitions"}
TYPES = {"string", "integer", "number", "boolean", "null", "object", "array"}
BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
INTEGER_BOUND = 10**18  # past it an integer range's expression grows a branch per digit; no answer needs more

_YEAR = "[1-9][0-9]{3}"
_DAY = ("(0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8])")
_TIME = "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
# ASCII expressions every answer of which the `jsonschema` format checker accepts (February stops at the 28th).
FORMATS = {
    "date": f"{_YEAR}-({_DAY})",
    "time": _TIME,
    "date-time": f"{_YEAR}-({_DAY})T{_TIME}",
    "uuid": "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    "email": "[a-z0-9._+-]+@[a-z0-9-]+(\\.[a-z0-9-]+)+",
    "ipv4": "((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])",
}
# Pattern pieces that could write a quote, a backslash or a control character into the JSON string.
UNSAFE_IN_PATTERN = (".", "[^", "\\S", "\\W", "\\D", "\\s", "\\p", "\\P", '"', "\\\\")


def refuse(keyword: str, why: str) -> APIError:
    return APIError(400, f"response_format: JSON Schema keyword {keyword!r} {why}", "response_format", "unsupported_schema")


class SchemaCheck:
    """Walks a schema, refusing what would not be enforced, and rewrites formats and integer bounds."""

    def __init__(self, root: dict):
        self.root = root
        self.ranges: dict[str, str] = {}  # placeholder constant -> the integer range's expression

    def definition(self, ref: str):
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise refuse("$ref", "may only point inside the schema (#/$defs/NAME)")
        node = self.root
        for part in ref[2:].split("/"):
            if not isinstance(node, dict) or part not in node:
                raise refuse("$ref", f"points at {ref}, which the schema does not define")
            node = node[part]
        return node

    def walk(self, schema, refs: tuple = ()):
        # Long on purpose: one branch per JSON Schema keyword, enforced or refused by name.
        if schema is True:
            return {}
        if not isinstance(schema, dict):
            raise refuse("schema", "must be an object (or true)")
        out = {}
        for key, value in schema.items():
            if key in ANNOTATIONS:
                if key in ("$defs", "definitions") and isinstance(value, dict):
                    out[key] = {name: self.walk(sub, refs) for name, sub in value.items()}
                continue
            out[key] = value
        known = {"$defs", "definitions", "type", "enum", "const", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
                 "minLength", "maxLength", "pattern", "format", "anyOf", "oneOf", "allOf", "$ref", "uniqueItems", *BOUNDS}
        for key in out:
            if key not in known:
                raise refuse(key, "is not supported for structured output")
        if "$ref" in out:
            ref = out["$ref"]
            if ref in refs:
                raise refuse("$ref", f"is recursive ({ref} refers to itself): answers could never end")
            if len(out) > 1:
                raise refuse("$ref", "may not sit beside other keywords")
            self.walk(self.definition(ref), refs + (ref,))
            return out
        for key in ("oneOf", "allOf"):
            if key in out:
                if not isinstance(out[key], list) or len(out[key]) != 1:
                    raise refuse(key, "is supported with exactly one subschema (anyOf takes several)")
                merged = {k: v for k, v in out.items() if k != key}
                if merged:
                    raise refuse(key, "may not sit beside other keywords")
                return self.walk(out[key][0], refs)
        if "anyOf" in out:
            if not isinstance(out["anyOf"], list) or not out["anyOf"] or len(out) > 1:
                raise refuse("anyOf", "needs a non-empty list and no keywords beside it")
            out["anyOf"] = [self.walk(s, refs) for s in out["anyOf"]]
            return out
        for key in ("enum", "const"):
            values = out.get(key, []) if key == "enum" else [out.get(key)]
            if key in out and (not isinstance(values, list) or not values or
                               any(isinstance(v, (dict, list)) for v in values)):
                raise refuse(key, "is supported with strings, numbers, booleans and null")
        kinds = out.get("type")
        if kinds is not None:
            listed = kinds if isinstance(kinds, list) else [kinds]
            if not listed or any(k not in TYPES for k in listed):
                raise refuse("type", f"must be one of {sorted(TYPES)} (or a list of them)")
        if out.get("uniqueItems"):
            raise refuse("uniqueItems", "cannot be enforced while decoding")
        out.pop("uniqueItems", None)
        if any(k in out for k in BOUNDS):
            return self.integer_range(out)
        if "format" in out:
            return self.format(out)
        if "pattern" in out:
            out["pattern"] = self.pattern(out["pattern"])
        if "properties" in out:
            if not isinstance(out["properties"], dict):
                raise refuse("properties", "must be an object")
            out["properties"] = {name: self.walk(sub, refs) for name, sub in out["properties"].items()}
        if "required" in out:
            missing = [n for n in out["required"] if n not in out.get("properties", {})] if isinstance(out["required"], list) else [None]
            if missing:
                raise refuse("required", f"names {missing[0]!r}, which is not among the properties")
        if isinstance(out.get("additionalProperties"), dict):
            out["additionalProperties"] = self.walk(out["additionalProperties"], refs)
        if "items" in out:
            if not isinstance(out["items"], (dict, bool)):
                raise refuse("items", "must be one schema (tuples are not supported)")
            out["items"] = self.walk(out["items"], refs)
        return out

    def pattern(self, pattern) -> str:
        if not isinstance(pattern, str):
            raise refuse("pattern", "must be a string")
        bare = pattern.removeprefix("^")
        bare = bare[:-1] if bare.endswith("$") and not bare.endswith("\\$") else bare
        unsafe = [p for p in UNSAFE_IN_PATTERN if p in bare]
        if unsafe or "^" in bare or "$" in bare.replace("\\$", ""):
            raise refuse("pattern", f"may not use {unsafe[0] if unsafe else 'inner anchors'!r}: it could write "
                                    "characters that break the JSON string (name the characters instead)")
        return bare

    def format(self, out: dict) -> dict:
        name = out.pop("format")
        if name not in FORMATS:
            raise refuse("format", f"{name!r} is not supported (supported: {', '.join(FORMATS)})")
        if out.get("type", "string") != "string" or set(out) - {"type"}:
            raise refuse("format", "is supported on a plain string (no pattern or length beside it)")
        return {"type": "string", "pattern": FORMATS[name]}

    def integer_range(self, out: dict) -> dict:
        if out.get("type") != "integer" or set(out) - {"type", *BOUNDS}:
            raise refuse(next(k for k in BOUNDS if k in out), "is supported on a plain integer (not on numbers)")
        lo, hi = None, None
        for key, value in out.items():
            if key == "type":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not abs(value) <= INTEGER_BOUND:
                raise refuse(key, f"must be a number within ±{INTEGER_BOUND:.0e}")  # NaN fails the comparison too
            if key == "minimum":
                lo = max(lo, math.ceil(value)) if lo is not None else math.ceil(value)
            elif key == "exclusiveMinimum":
                lo = max(lo, math.floor(value) + 1) if lo is not None else math.floor(value) + 1
            elif key == "maximum":
                hi = min(hi, math.floor(value)) if hi is not None else math.floor(value)
            else:
                hi = min(hi, math.ceil(value) - 1) if hi is not None else math.ceil(value) - 1
        if lo is not None and hi is not None and lo > hi:
            raise refuse("minimum", f"and maximum leave no integer ({lo} > {hi})")
        placeholder = f"GENLABRANGE{len(self.ranges)}"
        self.ranges[placeholder] = integer_range(lo, hi)
        return {"const": placeholder}


def integer_range(lo: int | None, hi: int | None) -> str:
    """A regular expression of the decimal integers in [lo, hi] (None: unbounded), no leading zeros."""
    parts = []
    if hi is None or hi >= 0:
        parts += natural_range(max(lo, 0) if lo is not None else 0, hi)
    if lo is None or lo < 0:
        negatives = natural_range(max(-hi, 1) if hi is not None and hi < 0 else 1, -lo if lo is not None else None)
        parts += [f"-({'|'.join(negatives)})"] if negatives else []
    return "(" + "|".join(parts) + ")"


def natural_range(a: int, b: int | None) -> list[str]:
    """Alternatives matching the integers a..b (b None: no end), a >= 0."""
    if b is not None and a > b:
        return []
    out = []
    top = len(str(b)) if b is not None else len(str(a))
    for digits in range(len(str(a)), top + 1):
        lo = max(a, 10 ** (digits - 1) if digits > 1 else 0)
        hi = min(b, 10 ** digits - 1) if b is not None else 10 ** digits - 1
        if lo <= hi:
            out.append(same_length(str(lo), str(hi)))
    if b is None:
        out.append(f"[1-9][0-9]{{{top},}}")  # every longer number
    return out


def same_length(lo: str, hi: str) -> str:
    """A regular expression of the numbers between two digit strings of one length."""
    if len(lo) == 1:
        return f"[{lo}-{hi}]"
    if lo[0] == hi[0]:
        return lo[0] + "(" + same_length(lo[1:], hi[1:]) + ")"
    rest = len(lo) - 1
    parts = [lo[0] + "(" + same_length(lo[1:], "9" * rest) + ")"]
    if int(hi[0]) - int(lo[0]) > 1:
        parts.append(f"[{int(lo[0]) + 1}-{int(hi[0]) - 1}][0-9]{{{rest}}}")
    parts.append(hi[0] + "(" + same_length("0" * rest, hi[1:]) + ")")
    return "|".join(parts)


# json_object: an object whose values are scalars, or flat lists and objects of scalars. (outlines-core's
# schema of any JSON nests three levels deep and takes minutes to compile over a tokenizer's tokens.)
_SCALAR = {"type": ["string", "integer", "boolean", "null"]}
JSON_OBJECT = {"type": "object", "additionalProperties": {"anyOf": [
    _SCALAR, {"type": "array", "items": _SCALAR}, {"type": "object", "additionalProperties": _SCALAR}]}}


def schema_regex(schema) -> str:
    """The regular expression of a JSON schema's answers, or an APIError naming what cannot be enforced."""
    from outlines_core.json_schema import build_regex_from_schema

    check = SchemaCheck(schema if isinstance(schema, dict) else {})
    rewritten = check.walk(schema)
    try:
        regex = build_regex_from_schema(json.dumps(rewritten))
        for placeholder, expression in check.ranges.items():
            regex = regex.replace(build_regex_from_schema(json.dumps({"const": placeholder})), expression)
    except (ValueError, TypeError, RuntimeError) as e:
        raise APIError(400, f"response_format: the schema is not supported ({str(e).splitlines()[0][:160]})",
                       "response_format", "invalid_value") from None
    return regex


def requested_regex(body) -> tuple[str, str] | None:
    """(the regular expression the output must match, the parameter it came from), or None."""
    asked = [name for name, v in (("response_format", body.response_format and body.response_format.type != "text"),
                                  ("genlab_regex", body.genlab_regex), ("genlab_choice", body.genlab_choice)) if v]
    if len(asked) > 1:
        raise APIError(400, f"{asked[1]}: give one of response_format, genlab_regex and genlab_choice", asked[1])
    if not asked:
        return None
    if asked[0] == "genlab_regex":
        return body.genlab_regex, "genlab_regex"
    if asked[0] == "genlab_choice":
        return "(" + "|".join(regex_literal(c) for c in body.genlab_choice) + ")", "genlab_choice"
    f = body.response_format
    if f.type == "json_schema" and f.json_schema is None:
        raise APIError(400, "response_format: json_schema needs its json_schema.schema", "response_format")
    return schema_regex(JSON_OBJECT if f.type == "json_object" else f.json_schema.schema_), "response_format"


def regex_literal(text: str) -> str:
    """`text` as a regular expression that matches only itself."""
    return "".join("\\" + c if c in "\\.^$|?*+()[]{}-" else c for c in text)


class PatternCache:
    """A served model's compiled patterns and failed ones, by expression; the least recently used go first
    once the cached automata pass `max_bytes`. Compiling waits on a thread of its own (not the event loop's
    pool), one compile at a time per model, at most `max_waiting` in line (then a 429); a second request for
    the same expression waits for the first."""

    BYTES_PER_TRANSITION = 120  # a Python dict entry of two ints, measured roughly

    def __init__(self, name: str, generator, timeout: float, memory_mb: int, max_bytes: int = 256 << 20, max_waiting: int = 8):
        self.generator, self.timeout, self.memory_mb, self.max_bytes = generator, timeout, memory_mb, max_bytes
        self.entries: OrderedDict[str, tuple[object, int]] = OrderedDict()  # regex -> (Pattern or APIError, bytes)
        self.pending: dict[str, asyncio.Future] = {}
        self.compiler = ModelWorker(f"patterns-{name}", max_waiting)

    async def get(self, regex: str, param: str):
        if regex in self.entries:
            self.entries.move_to_end(regex)
            return self._result(self.entries[regex][0])
        if regex in self.pending:
            return self._result(await asyncio.shield(self.pending[regex]))
        try:
            compiling = self.compiler.start(self._compile, regex, param)
        except Busy:
            raise APIError(429, f"{param}: patterns are being compiled for this model; retry shortly", param,
                           "queue_full", kind="rate_limit_error", headers={"Retry-After": str(int(self.timeout) + 1)}) from None
        self.pending[regex] = compiling  # kept when done, whether or not the client that asked still waits
        compiling.add_done_callback(lambda done: self._settled(regex, done))
        return self._result(await asyncio.shield(compiling))

    def _settled(self, regex: str, done: asyncio.Future) -> None:
        self.pending.pop(regex, None)
        if not done.cancelled() and done.exception() is None:
            self._keep(regex, done.result())

    def _compile(self, regex: str, param: str):
        try:
            return self.generator.compile_pattern(regex, self.timeout, self.memory_mb)
        except GenlabError as e:
            return APIError(400, f"{param}: {e}", param, "invalid_value")

    def _keep(self, regex: str, result) -> None:
        size = 1000 + (result.transitions * self.BYTES_PER_TRANSITION if isinstance(result, (Pattern, LazyPattern)) else 0)
        if size > self.max_bytes:
            return
        self.entries[regex] = (result, size)
        while sum(s for _, s in self.entries.values()) > self.max_bytes:
            self.entries.popitem(last=False)

    @staticmethod
    def _result(result):
        if isinstance(result, APIError):
            raise result
        return result
