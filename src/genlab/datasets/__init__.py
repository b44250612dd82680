"""Where training data comes from: files, folders and named datasets.

`resolve_source(name_or_path)` turns `--data` into a local path: a named
dataset is built or downloaded into the cache first (see named.py).
Sources per modality (text.py, and later code, midi and images) read what
that path holds.
"""

from genlab.datasets.named import NAMED_DATASETS, cache_dir, resolve_source

__all__ = ["NAMED_DATASETS", "cache_dir", "resolve_source"]
