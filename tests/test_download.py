"""The download path, against a real HTTP server on localhost."""

import hashlib
import http.server
import threading
from functools import partial

import pytest

from genlab.datasets.download import fetch
from genlab.datasets.named import resolve_source
from genlab.core.errors import GenlabError


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_fetch_downloads_once_and_verifies(server, tmp_path):
    root, url = server
    body = b"First Citizen:\nBefore we proceed any further, hear me speak.\n" * 100
    (root / "input.txt").write_bytes(body)
    dest = tmp_path / "cache" / "input.txt"
    got = fetch(f"{url}/input.txt", dest, hashlib.sha256(body).hexdigest(), max_bytes=1 << 20, progress=False)
    assert got.read_bytes() == body
    (root / "input.txt").unlink()  # a second call must use the cache, not the network
    assert fetch(f"{url}/input.txt", dest, hashlib.sha256(body).hexdigest(), max_bytes=1 << 20, progress=False).read_bytes() == body


def test_sha256_mismatch_caches_nothing(server, tmp_path):
    root, url = server
    (root / "input.txt").write_bytes(b"tampered")
    dest = tmp_path / "cache" / "input.txt"
    with pytest.raises(GenlabError, match="sha256 mismatch"):
        fetch(f"{url}/input.txt", dest, "0" * 64, max_bytes=1 << 20, progress=False)
    assert list(dest.parent.iterdir()) == []


def test_missing_file_is_one_line_error_suggesting_a_local_copy(server, tmp_path):
    _, url = server
    with pytest.raises(GenlabError, match="download failed.*--data PATH"):
        fetch(f"{url}/nope.txt", tmp_path / "x.txt", None, max_bytes=1 << 20, progress=False)


def test_tinyshakespeare_goes_through_the_checked_download(server, monkeypatch):
    root, url = server
    (root / "shakespeare.txt").write_text("not the real corpus\n")
    monkeypatch.setenv("GENLAB_TINYSHAKESPEARE_URL", f"{url}/shakespeare.txt")
    with pytest.raises(GenlabError, match="sha256 mismatch"):  # the pinned hash guards the named dataset
        resolve_source("tinyshakespeare", progress=False)


def test_a_local_file_stands_in_for_a_named_dataset(tmp_path):
    local = tmp_path / "input.txt"
    local.write_text("hello")
    assert resolve_source(str(local)) == local


def test_a_server_that_sends_too_much_is_cut_off_and_caches_nothing(server, tmp_path):
    """The hash is only known at the end: a mirror that sent an endless (or huge) body used to fill the disk first."""
    root, url = server
    (root / "big.bin").write_bytes(b"x" * (3 << 20))
    dest = tmp_path / "cache" / "big.bin"
    with pytest.raises(GenlabError, match=r"big.bin: the server sent more than the 1,048,576 bytes"):
        fetch(f"{url}/big.bin", dest, "0" * 64, max_bytes=1 << 20, progress=False)
    assert list(dest.parent.iterdir()) == []

    class Endless(http.server.BaseHTTPRequestHandler):  # no Content-Length: the size is only seen while reading
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"y" * 65536)
            except OSError:
                pass

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with pytest.raises(GenlabError, match="more than the 1,048,576 bytes"):
            fetch(f"http://127.0.0.1:{httpd.server_address[1]}/endless", dest, "0" * 64, max_bytes=1 << 20, progress=False)
    finally:
        httpd.shutdown()
    assert list(dest.parent.iterdir()) == []
