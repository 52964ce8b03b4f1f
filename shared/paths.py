"""Where the project lives on disk, so every process resolves the same files whatever its working directory."""

import os
from pathlib import Path


def project_root() -> Path:
    override = os.environ.get("FLARE_HOME")
    if override:
        return Path(override).resolve()
    return Path(__file__).resolve().parents[1]
