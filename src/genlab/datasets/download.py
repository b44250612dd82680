"""Download a file once into the cache, verified by sha256, written atomically."""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from genlab.core.progress import progress_bar

from genlab.core.errors import GenlabError


class TooLarge(Exception):
    pass


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fetch(url: str, dest: Path, sha256: str | None, *, max_bytes: int, progress: bool = True, timeout: float = 60.0) -> Path:
    """Return `dest`, downloading `url` into it first unless a verified copy is there.

    The download goes to a temp file beside `dest` and is renamed into place
    only after its sha256 matched, so an interrupted or corrupt download never
    looks like a cached file. A server that sends more than `max_bytes` (a
    mirror gone wrong, or one that never stops) is cut off there: the hash is
    only known at the end, and the disk would fill first.
    """
    dest = Path(dest)
    if dest.is_file() and (sha256 is None or sha256_of(dest) == sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
            length = resp.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
            if total is not None and total > max_bytes:
                raise TooLarge
            received = 0
            with progress_bar(total=total or None, unit="B", unit_scale=True, desc=f"downloading {dest.name}", enabled=progress) as bar:
                while block := resp.read(1 << 16):
                    received += len(block)
                    if received > max_bytes:
                        raise TooLarge
                    out.write(block)
                    h.update(block)
                    bar.update(len(block))
    except TooLarge:
        tmp.unlink(missing_ok=True)
        raise GenlabError(f"{url}: the server sent more than the {max_bytes:,} bytes this file can be; nothing was cached") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:  # ValueError: not a URL
        tmp.unlink(missing_ok=True)
        reason = getattr(e, "reason", e)
        raise GenlabError(f"{url}: download failed ({reason}); pass a local copy with --data PATH instead") from None
    if sha256 is not None and h.hexdigest() != sha256:
        tmp.unlink(missing_ok=True)
        raise GenlabError(f"{url}: sha256 mismatch (got {h.hexdigest()[:12]}…, expected {sha256[:12]}…); nothing was cached")
    os.replace(tmp, dest)
    return dest
