"""A local stand-in for NOAA's archive servers: serves a folder laid out like NCEI/NGDC over HTTP on 127.0.0.1,
with directory listings (as NOAA's Apache pages list a month's files), byte ranges, and faults on request
(a 500, a response cut off half-way, or one sent slowly), logging every request."""

from __future__ import annotations

import gzip
import re
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, Literal

Fault = Literal["fail", "truncate", "slow"]


@dataclass
class NoaaServer:
    root: Path
    base_url: str = ""
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    faults: dict[str, list[Fault]] = field(default_factory=lambda: defaultdict(list))

    def fail_next(self, path: str, *faults: Fault) -> None:
        """The next requests of `path` (below the root, e.g. 'avg/2015/...csv') meet these faults, in order."""
        self.faults["/" + path.lstrip("/")].extend(faults)

    def gets(self, path: str) -> list[str | None]:
        """The Range header of every request of `path` so far (None: no Range)."""
        return [rng for requested, rng in self.requests if requested == "/" + path.lstrip("/")]


def _handler(server_state: NoaaServer):
    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(server_state.root), **kwargs)

        def log_message(self, format: str, *args) -> None:  # quiet: the test reads server_state.requests
            pass

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            server_state.requests.append((path, self.headers.get("Range")))
            local = Path(self.translate_path(path))
            if local.is_dir() or not local.is_file():
                return super().do_GET()  # listings and 404s as http.server writes them
            faults = server_state.faults.get(path)
            fault = faults.pop(0) if faults else None
            if fault == "fail":
                self.send_error(500, "injected failure")
                return
            body = local.read_bytes()
            start = 0
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
            if match:
                start = int(match.group(1))
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            payload = body[start:]
            if fault == "truncate":  # the connection drops half-way through the body
                self.wfile.write(payload[: len(payload) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            if fault == "slow":  # a long download, for a client to be killed in the middle of
                try:
                    for at in range(0, len(payload), 1 << 16):
                        self.wfile.write(payload[at:at + (1 << 16)])
                        self.wfile.flush()
                        time.sleep(0.05)
                except (BrokenPipeError, ConnectionResetError):  # the client was killed: what the test wants
                    pass
                return
            self.wfile.write(payload)

    return Handler


@contextmanager
def serve(root: Path) -> Iterator[NoaaServer]:
    state = NoaaServer(root)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def place(root: Path, relative: str, content: bytes) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def recorded(relative: str) -> bytes:
    """A real recorded file of the data set by its plain name, decompressed if the data set keeps it gzipped
    (NOAA serves these uncompressed)."""
    from tests.conftest import DATA_DIR

    for candidate in (DATA_DIR / relative, DATA_DIR / f"{relative}.gz"):
        if candidate.exists():
            raw = candidate.read_bytes()
            return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    raise FileNotFoundError(f"{relative} (or {relative}.gz) is not in {DATA_DIR}")
