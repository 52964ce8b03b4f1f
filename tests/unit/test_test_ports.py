"""The ports the tests give their services: each xdist worker its own block, outside the kernel's own range."""

from __future__ import annotations

from pathlib import Path

from tests.support import ports


def test_each_worker_hands_out_distinct_free_ports_of_its_own_block_below_the_kernels_range():
    first, second = ports.free_test_port(), ports.free_test_port()
    block = range(ports.FIRST_PORT + ports._INDEX * ports.BLOCK, ports.FIRST_PORT + (ports._INDEX + 1) * ports.BLOCK)
    assert first != second and first in block and second in block
    kernel_range = Path("/proc/sys/net/ipv4/ip_local_port_range")
    if kernel_range.exists():
        low = int(kernel_range.read_text().split()[0])
        assert ports.FIRST_PORT + 4 * ports.BLOCK <= low, "the workers' blocks must stay below the kernel's range"
