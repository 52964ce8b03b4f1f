"""Ports for what the tests start. With the suite on two workers (pytest-xdist), a port one worker found free
could be taken by the other worker's service before its own service bound it: seen once, the demo's predictor
found its API port held by another test's process and crashed, while `flare demo` took that process's /health
for its own. So each worker takes ports from a block of its own, below the range the kernel hands out for port 0
and for outgoing connections (32768-60999 by default), where nothing else is given them."""

from __future__ import annotations

import itertools
import os

from shared import infra

FIRST_PORT = 20000
BLOCK = 3000  # four workers' blocks fit below 32768


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # gw0, gw1, ...; unset without xdist
    return int(worker.removeprefix("gw")) if worker.removeprefix("gw").isdigit() else 0


_INDEX = _worker_index()
_CANDIDATES = itertools.cycle(range(FIRST_PORT + _INDEX * BLOCK, FIRST_PORT + (_INDEX + 1) * BLOCK))


def free_test_port() -> int:
    """A free port of this worker's block, never one handed out before in this session while others remain."""
    if _INDEX >= 4:
        return infra.free_port()
    for _ in range(BLOCK):
        port = next(_CANDIDATES)
        if infra.port_is_free(port):
            return port
    raise RuntimeError(f"no free port in {FIRST_PORT + _INDEX * BLOCK}-{FIRST_PORT + (_INDEX + 1) * BLOCK - 1}")
