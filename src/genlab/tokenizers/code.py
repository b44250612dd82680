"""Code-aware byte-level BPE: genlab's BPE with a pre-tokenizer that respects layout.

Before byte-level BPE, the text is split so that every run of newlines and
every run of two or more spaces or tabs (indentation, alignment) is a piece
of its own. BPE then learns whole indentation levels ("    ", "        ")
as single tokens instead of gluing the last space to the next word, and a
newline never merges with code around it. Splitting only isolates pieces
and the decoder is byte-level, so decode(encode(x)) == x for any text.
"""

from __future__ import annotations

from tokenizers import Regex, pre_tokenizers

from genlab.tokenizers.bpe import BPETokenizer

LAYOUT = r"(?:\r?\n)+[ \t]*|[ \t]{2,}"  # line breaks with the indentation after them; other runs of blanks


class CodeTokenizer(BPETokenizer):
    kind = "code"
    unit = "byte"

    @classmethod
    def pre_tokenizer(cls):
        return pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LAYOUT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ])
