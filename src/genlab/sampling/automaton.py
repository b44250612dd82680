"""Compile a regular expression into an automaton over a tokenizer's tokens, in a process of its own.

Run by path (`python -I automaton.py`), not imported: it needs nothing of genlab (nor torch), so the
process starts in a fraction of a second, and whoever starts it can bound its time (kill it) and its
memory (this script caps its own address space before compiling). outlines-core builds the whole
automaton up front, which for some patterns (long counted repeats, wide alternations over a BPE
vocabulary) takes minutes and gigabytes: a bound is the only safe way to try.

stdin:  {"regex": str, "vocab_size": int, "tokens": [[hex bytes, [ids]], ...], "memory_mb": int, "max_transitions": int}
stdout: {"initial": int, "final": [int], "next": [[state, [[token, state], ...]], ...]}
        or {"error": one line}, {"error": "memory"} past the memory budget or `max_transitions` (a larger
        automaton would take the server seconds to read in); exit code 0 either way (a kill or a crash means
        the budget ran out).
"""

import json
import resource
import sys


def cap_memory(extra_mb: int) -> None:
    """Allow this process `extra_mb` more address space than it holds now."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[0])
    held = pages * resource.getpagesize()
    limit = held + extra_mb * (1 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def compile_automaton(regex: str, vocab_size: int, tokens: list, max_transitions: int) -> dict:
    from outlines_core import Index, Vocabulary

    by_bytes = {bytes.fromhex(b): ids for b, ids in tokens}
    index = Index(regex, Vocabulary(vocab_size, by_bytes))  # id vocab_size: outlines' end-of-text
    if sum(map(len, index.get_transitions().values())) > max_transitions:
        raise MemoryError
    eos = vocab_size
    moves = [[s, [[t, n] for t, n in out.items() if t != eos]] for s, out in index.get_transitions().items()]
    return {"initial": index.get_initial_state(), "final": sorted(index.get_final_states()), "next": moves}


def main() -> None:
    job = json.load(sys.stdin)
    try:
        import outlines_core  # noqa: F401  (imported before the cap: its own size is not the pattern's)

        cap_memory(int(job["memory_mb"]))
        out = compile_automaton(job["regex"], int(job["vocab_size"]), job["tokens"], int(job["max_transitions"]))
    except MemoryError:
        out = {"error": "memory"}
    except (ValueError, RuntimeError) as e:
        out = {"error": (str(e).splitlines() or ["cannot be compiled"])[0][:160]}
    sys.stdout.write(json.dumps(out, separators=(",", ":")))


if __name__ == "__main__":
    main()
