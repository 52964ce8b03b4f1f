"""SWPC's JSON feed served by a local HTTP server from recorded files, for the tests of the live ingestor."""

from __future__ import annotations

import json
import os
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FEED = "xrays-1-day.json"


class SwpcLikeHandler(SimpleHTTPRequestHandler):
    """Serves the feed files of a folder (with Last-Modified / If-Modified-Since), failing first if asked."""

    failures_left = 0
    requests = 0

    def do_GET(self) -> None:
        type(self).requests += 1
        if type(self).failures_left > 0:
            type(self).failures_left -= 1
            self.send_error(503, "Service Unavailable")
            return
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


class LocalSwpc:
    def __init__(self, folder: Path):
        self.folder = folder
        self.handler = type("Handler", (SwpcLikeHandler,), {})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), partial(self.handler, directory=str(folder)))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def revise(self, minutes: int, factor: float) -> list[str]:
        """Change the long-band flux of the last `minutes` minutes, as SWPC does to recent data."""
        path = self.folder / FEED
        records = json.loads(path.read_text())
        long_band = [r for r in records if r["energy"] == "0.1-0.8nm"][-minutes:]
        for record in long_band:
            record["flux"] *= factor
        path.write_text(json.dumps(records))
        later = time.time() + 10  # Last-Modified has whole seconds: make the change visible to If-Modified-Since
        os.utime(path, (later, later))
        return [r["time_tag"] for r in long_band]
