"""Benchmark (not a timed test): how long `flare --help` and `flare status` take to answer, as the operator runs
them (a fresh interpreter each time), beside the interpreter starting and doing nothing (`python -c pass`)
timed in the same loop. The goal is an absolute one: under 0.5 s each. Beside the wall time, the CPU time of
the process (user + system), which a machine busy with other work inflates less.

Run with `make bench` (or `.venv/bin/pytest -m slow -s tests/bench/bench_cli.py -o addopts=""`).
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import time

import pytest

from tests.conftest import PROJECT_ROOT

RUNS = 15


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median_seconds(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Median wall and CPU seconds of `command` over RUNS runs."""
    wall, cpu = [], []
    for _ in range(RUNS):
        began, began_cpu = time.perf_counter(), _children_cpu()
        subprocess.run(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=False)
        wall.append(time.perf_counter() - began)
        cpu.append(_children_cpu() - began_cpu)
    return statistics.median(wall), statistics.median(cpu)


@pytest.mark.slow
def test_flare_command_start_up(tmp_path, bench_figures):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "STATE_DIR": str(tmp_path / "state")}
    bare_wall, bare_cpu = median_seconds([sys.executable, "-c", "pass"], env)
    for args in (["--help"], ["status"]):
        wall, cpu = median_seconds([sys.executable, "-m", "flare_cli.main", *args], env)
        bench_figures("cli", f"flare {args[0]}, wall, median of {RUNS}", wall * 1000, "ms",
                      baseline=("python -c pass, wall", bare_wall * 1000), note="goal: under 500 ms")
        bench_figures("cli", f"flare {args[0]}, CPU, median of {RUNS}", cpu * 1000, "ms",
                      baseline=("python -c pass, CPU", bare_cpu * 1000))
