"""One table for every benchmark: each figure is recorded beside the baseline measured in the same run.

A benchmark asks for `bench_figures` and calls it once per figure; at the end of the session the table is
printed and the figures are written as JSON to `var/bench/results.json` (or `$BENCH_RESULTS`), with the
machine they were measured on. A benchmark on files larger than the bundled sample holds asks for them through
`reference_file`, and is skipped with the reason when the reference data set is not there.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import psutil
import pytest

from shared.settings import load_settings
from tests.conftest import PROJECT_ROOT

_FIGURES = pytest.StashKey[list]()


@dataclass(frozen=True)
class Figure:
    area: str
    name: str
    value: float
    unit: str
    baseline_name: str | None = None
    baseline_value: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline_value in (None, 0):
            return None
        return self.value / self.baseline_value


class FigureBook:
    def __init__(self, figures: list[Figure]):
        self._figures = figures

    def __call__(self, area: str, name: str, value: float, unit: str, *, baseline: tuple[str, float] | None = None,
                 note: str = "") -> Figure:
        baseline_name, baseline_value = baseline if baseline else (None, None)
        figure = Figure(area, name, float(value), unit, baseline_name, baseline_value, note)
        self._figures.append(figure)
        return figure


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_FIGURES] = []


@pytest.fixture(scope="session")
def bench_figures(pytestconfig: pytest.Config) -> FigureBook:
    return FigureBook(pytestconfig.stash[_FIGURES])


@pytest.fixture(scope="session")
def reference_file() -> Callable[[str], Path]:
    """A file of the team's larger reference data set, for benchmarks on what the bundled sample does not hold.
    The set is optional (a clone has nothing beside it): without the file the benchmark is skipped, saying
    which file, where it was looked for and the setting that moves it."""
    folder = load_settings().reference_data_dir

    def skip(what: str, path: Path | None) -> None:
        where = f"not found at {path}" if path else "no reference data set is configured"
        pytest.skip(f"needs {what}, {where}; set reference_data_dir (env REFERENCE_DATA_DIR) to the folder "
                    "holding it")

    if folder is None or not folder.is_dir():  # before any broker or database is started for the benchmark
        skip("the reference data set", folder)

    def find(relative: str) -> Path:
        path = folder / relative
        if not path.is_file():
            skip(f"{relative} of the reference data set", path)
        return path

    return find


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def results_path() -> Path:
    return Path(os.environ.get("BENCH_RESULTS") or PROJECT_ROOT / "var" / "bench" / "results.json")


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    figures: list[Figure] = config.stash.get(_FIGURES, [])
    if not figures:
        return
    write = terminalreporter.write_line
    terminalreporter.section("benchmark figures (ratio = figure / baseline measured in the same run)")
    header = f"{'area':<11} {'figure':<44} {'value':>12} {'unit':<10} {'baseline':<34} {'base value':>11} {'ratio':>7}"
    write(header)
    write("-" * len(header))
    for f in figures:
        ratio = _number(f.ratio) if f.ratio is not None else ""
        base_value = _number(f.baseline_value) if f.baseline_value is not None else ""
        write(f"{f.area:<11} {f.name:<44} {_number(f.value):>12} {f.unit:<10} {f.baseline_name or '':<34} "
              f"{base_value:>11} {ratio:>7}")
        if f.note:
            write(f"{'':<11}   ({f.note})")
    path = results_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "measured_at": datetime.now(timezone.utc).isoformat(),
        "machine": {"cpus": psutil.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
                    "python": platform.python_version(), "platform": platform.platform()},
        "figures": [{**asdict(f), "ratio": f.ratio} for f in figures],
    }
    path.write_text(json.dumps(document, indent=2))
    write(f"figures written to {path}")
