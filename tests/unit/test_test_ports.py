"""The ports the tests give their services: each xdist worker its own block, below the kernel's own range."""

from __future__ import annotations

from tests.support import ports

LINUX_DEFAULT_EPHEMERAL_START = 32768  # net.ipv4.ip_local_port_range's default first port


def test_each_worker_hands_out_distinct_free_ports_of_its_own_block_below_the_kernels_range():
    first, second = ports.free_test_port(), ports.free_test_port()
    block = range(ports.FIRST_PORT + ports._INDEX * ports.BLOCK, ports.FIRST_PORT + (ports._INDEX + 1) * ports.BLOCK)
    assert first != second and first in block and second in block
    assert ports.FIRST_PORT + 4 * ports.BLOCK <= LINUX_DEFAULT_EPHEMERAL_START
