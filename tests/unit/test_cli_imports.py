"""An operator types `flare --help` or `flare status` and gets an answer at once: building the command line and
answering `status` load none of the modelling and streaming libraries, which cost seconds to import, and
building the command line loads no library outside the standard one at all (settings, logging and the message
schemas cost a quarter of a second more), and structlog loads when something first logs. Each command imports
what it uses in its handler. (How fast it starts
is measured in tests/bench/bench_cli.py.)"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import PROJECT_ROOT

HEAVY = ("sklearn", "sksurv", "scipy", "pandas", "numpy", "joblib", "faust", "matplotlib")

# Every module under flare_cli.commands, listed in main.py or not, then what `flare status` loads on top.
PROBE = """
import json, pkgutil, sys
from importlib import import_module
import flare_cli.commands
from flare_cli.main import build_parser, main

def heavy():
    return sorted({name.split(".")[0] for name in sys.modules} & set(HEAVY))

def outside_the_standard_library():
    top = {name.split(".")[0] for name in sys.modules if not name.startswith("_")}
    return sorted(top - set(sys.stdlib_module_names) - {"flare_cli", "services", "shared"})

build_parser()
for module in pkgutil.iter_modules(flare_cli.commands.__path__, "flare_cli.commands."):
    import_module(module.name)
after_parser, libraries = heavy(), outside_the_standard_library()
status_exit = main(["status"])
print(json.dumps({"after_parser": after_parser, "libraries": libraries, "after_status": heavy(),
                  "status_libraries": outside_the_standard_library(), "status_exit": status_exit}))
"""


def test_building_the_parser_and_flare_status_import_no_heavy_library(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run([sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{PROBE}"], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["after_parser"] == [], f"a flare_cli command module imports {found['after_parser']} at load time"
    assert found["libraries"] == [], f"building the parser imports {found['libraries']}"
    assert found["after_status"] == [], f"`flare status` imports {found['after_status']}"
    # it logs nothing, so it does not load structlog (nor rich, which structlog imports when it is there)
    logging_libraries = set(found["status_libraries"]) & {"structlog", "rich"}
    assert not logging_libraries, f"`flare status` imports {sorted(logging_libraries)}"
    assert found["status_exit"] == 1, "nothing runs in an empty state folder, so status says so"
