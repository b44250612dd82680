"""Text: a file, a folder of files or a named corpus, modelled by characters or BPE tokens."""

from __future__ import annotations

import sys
from pathlib import Path

from genlab.config import RunConfig
from genlab.datasets.named import resolve_data
from genlab.datasets.text import read_text_file, read_text_pieces, select_files
from genlab.errors import GenlabError
from genlab.folders import check_output_file
from genlab.files import atomic_write_text
from genlab.tasks.sequence import SequenceGenerator, train_sequence


class TextSource:
    separator = "\n\n"

    def files(self, config: RunConfig, progress: bool = True) -> list[Path]:
        root, include, exclude = resolve_data(config.data, progress)
        files = select_files(root, include, exclude)
        if not files:
            raise GenlabError(f"{root}: no files match (check data.include / data.exclude)")
        if root.is_file() and root.stat().st_size == 0:
            raise GenlabError(f"{root}: the file is empty")
        return files

    def read(self, path: Path) -> str:
        return read_text_file(path)

    def pieces(self, path: Path):
        return read_text_pieces(path)


def source() -> TextSource:
    return TextSource()


def train(config: RunConfig, progress: bool = True, overwrite: bool = False):
    return train_sequence(config, TextSource(), progress, overwrite)


class TextGenerator(SequenceGenerator):
    def sample_command(self, prompt: str | None = None, n: int = 1, seed: int | None = None, out: Path | None = None,
                       stop: list[str] | None = None, stream: bool | None = None, max_new_tokens: int | None = None,
                       temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                       repetition_penalty: float | None = None) -> None:
        """`genlab sample` for text: print (streaming when there is one sample) and optionally save."""
        prompt = prompt if prompt is not None else self.config.sample.prompt
        decoding = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                        repetition_penalty=repetition_penalty)
        if stream is None:
            stream = n == 1 and out is None
        if stream and n == 1:
            sys.stdout.write(prompt)
            for piece in self.generate(prompt, stop=stop, seed=seed, stream=True, **decoding):
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
            return
        texts = self.generate(prompt, stop=stop, seed=seed, n=n, **decoding)
        texts = texts if isinstance(texts, list) else [texts]
        rendered = [prompt + t for t in texts]
        body = "\n\n".join(f"--- sample {i + 1} ---\n{t}" for i, t in enumerate(rendered)) if n > 1 else rendered[0]
        if out is not None:
            check_output_file(out, "text")
            atomic_write_text(Path(out), body + "\n")
            print(f"wrote {n} sample{'s' if n > 1 else ''} to {out}", file=sys.stderr)
        else:
            print(body)
