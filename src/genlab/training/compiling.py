"""`--compile`: torch.compile where a compiler works on this machine, eager with a one-line warning where none does.

torch.compile traces a function into graphs and has Inductor generate fused kernels for them (C++/OpenMP on
CPU, Triton on GPU). The first call pays for the compilation (tens of seconds on a small CPU), every later
call runs the fused code. What can fail is the compiler itself — no C++ compiler, an op Inductor cannot take,
a platform torch.compile does not support — and that should cost a user speed, not the run.
"""

from __future__ import annotations

import sys


class Compiled:
    """`fn` through torch.compile. The first call tries the compiled code; if compiling fails there, it prints
    one line naming `what` and the cause, and `fn` runs eagerly from then on. Errors of `fn` itself are
    raised as they are (the eager retry raises them)."""

    def __init__(self, fn, what: str, **options):
        import torch

        self.eager, self.what = fn, what
        self.compiled = torch.compile(fn, **options)
        self.tried = False

    def __call__(self, *args, **kwargs):
        if self.tried:
            return (self.eager if self.compiled is None else self.compiled)(*args, **kwargs)
        from torch._dynamo.exc import TorchDynamoException

        try:
            out = self.compiled(*args, **kwargs)
        except TorchDynamoException as e:
            cause = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
            print(f"warning: {self.what}: torch.compile does not work here ({cause[:200]}); running without it",
                  file=sys.stderr)
            self.compiled = None
            out = self.eager(*args, **kwargs)
        self.tried = True
        return out
