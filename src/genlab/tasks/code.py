"""Code: a code base (a folder, a git repository, or the embedded `python-stdlib`) modelled as a sequence.

Differs from text only in the source (file selection and deduplication,
genlab.datasets.code), the default tokenizer (code-aware byte-level BPE,
genlab.tokenizers.code) and generation, which stops where a Python function
ends and can complete the body of a given signature and docstring.

Defaults a code run takes when the config leaves them unset: `tokenizer.kind`
"code" (or the base run's kind when fine-tuning with `train.init_from`), and
`data.source` "python-stdlib".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from genlab.core.config import RunConfig
from genlab.datasets.named import resolve_data
from genlab.datasets.code import select_code
from genlab.core.files import read_text_file
from genlab.core.errors import GenlabError
from genlab.metrics.code import is_valid_python
from genlab.core.runs import RunDir
from genlab.tasks.sequence import SequenceGenerator, SequenceTask

# A new top-level statement ends the function being written (the stop list of Chen et al. 2021, plus
# decorators, imports and async defs); the stop string itself is not part of the output.
PYTHON_STOPS = ["\ndef ", "\nclass ", "\nasync def ", "\n@", "\nif ", "\nprint(", "\n#", "\nimport ", "\nfrom "]


class CodeSource:
    separator = "\n\n"

    def files(self, config: RunConfig, progress: bool = True) -> list[Path]:
        root, include, exclude = resolve_data(config.data, progress)
        selection = select_code(root, config.data.code, include, exclude, progress)
        if not selection.files:
            raise GenlabError(f"{root}: no code files left ({selection.summary()}); check data.code.extensions and data.include")
        if progress:
            print(f"{root}: {selection.summary()}", file=sys.stderr)
        return selection.files

    def read(self, path: Path) -> str:
        return read_text_file(path)


class CodeTask(SequenceTask):
    def defaults(self, config: RunConfig) -> RunConfig:
        return super().defaults(code_defaults(config))


def code_defaults(config: RunConfig) -> RunConfig:
    """`config` with the code task's defaults filled in where the user set nothing."""
    config = config.model_copy(deep=True)
    if "source" not in config.data.model_fields_set:
        config.data.source = "python-stdlib"
    if "kind" not in config.tokenizer.model_fields_set:
        kind = "code"
        if config.train.init_from:  # fine-tuning keeps the base run's tokenizer
            base = RunDir(config.train.init_from).require()
            kind = json.loads(base.tokenizer.read_text(encoding="utf-8")).get("genlab_tokenizer", kind)
        config.tokenizer.kind = kind
    return config


def function_body(completion: str) -> str:
    """`completion` cut before its first non-blank line that is not indented (the function has ended there)."""
    lines = completion.split("\n")
    for i, line in enumerate(lines[1:], 1):  # the first line continues the prompt's last line
        if line.strip() and not line[0].isspace():
            return "\n".join(lines[:i])
    return completion


def body_indent(prompt: str) -> str:
    """The indentation the body after `prompt` (a signature, maybe a docstring) starts with.

    A prompt is continued from its indentation rather than from a bare line break:
    a code tokenizer learned each line break together with the indentation after it,
    so a prompt that ends in "\n" alone ends in a token the model has rarely seen there.
    """
    lines = [line for line in prompt.split("\n") if line.strip()]
    if not lines:
        return ""
    last = lines[-1]
    if last.rstrip().endswith(":"):  # right after the signature: one level deeper than its `def`
        defs = [line for line in lines if line.lstrip().startswith(("def ", "async def "))]
        start = defs[-1] if defs else last
        return start[: len(start) - len(start.lstrip())] + "    "
    return last[: len(last) - len(last.lstrip())]


class CodeGenerator(SequenceGenerator):
    """A sequence generator for code (a genlab run's; tasks.hf derives a Hugging Face model's from it):
    generation stops by default where a top-level Python statement begins (PYTHON_STOPS; `stop=[]` for none)."""

    modality = "code"

    def default_stop(self) -> list[str]:
        return list(PYTHON_STOPS)

    def complete_function(self, signature_and_docstring: str, n: int = 1, seed: int | None = None, **decoding) -> list[str]:
        """n bodies of the function whose signature and docstring are given.

        Generation stops at PYTHON_STOPS, and what follows the first line that
        is not indented is dropped, so `signature_and_docstring + body` is the
        whole function.
        """
        prompt = signature_and_docstring if signature_and_docstring.endswith("\n") else signature_and_docstring + "\n"
        indent = body_indent(prompt)
        bodies = [function_body(indent + s.text) for s in self.generate(prompt + indent, n=n, seed=seed, **decoding)]
        if prompt is not signature_and_docstring:
            bodies = ["\n" + b for b in bodies]
        return bodies

    def sample_functions(self, n: int = 100, seed: int = 0, max_new_tokens: int = 256, temperature: float | None = None) -> list[str]:
        """n whole top-level functions, each the model's continuation of `def `."""
        samples = self.generate("def ", n=n, seed=seed, max_new_tokens=max_new_tokens, temperature=temperature)
        return ["def " + function_body(s.text) for s in samples]

    def evaluate(self, data: str | None = None, samples: int = 8, sample_tokens: int = 200, seed: int = 0,
                 progress: bool = True, functions: int = 20) -> dict:
        """The text metrics (loss, bits per byte, perplexity, distinct-n) plus the share of
        `functions` sampled functions that parse as Python."""
        results = super().evaluate(data=data, samples=samples, sample_tokens=sample_tokens, seed=seed, progress=progress)
        results["syntax_valid"] = sum(map(is_valid_python, self.sample_functions(functions, seed=seed))) / functions
        return results


TASK = CodeTask("code", CodeSource(), CodeGenerator)
