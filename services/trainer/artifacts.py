"""Writing a trained version to `models/`: the deployment plan's file names plus the version id, and the
sha256 of each file (the version id ends with a digest of those digests, so it names exactly these files)."""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import joblib

from shared.forecast_model import CLASSIFICATION_KIND, FLARE_HISTORY_SURVIVAL_KIND, sha256_file


@dataclass(frozen=True)
class SavedVersion:
    version: str
    artifacts: dict[str, str]  # artifact name -> absolute path
    digests: dict[str, str]    # artifact name -> sha256


def file_stem(artifact: dict[str, Any], date: str) -> str:
    if artifact["kind"] == CLASSIFICATION_KIND:
        return f"classification_pipeline_{date}"
    if artifact["kind"] == FLARE_HISTORY_SURVIVAL_KIND:
        return f"flare_history_survival_model_{artifact['target_class']}_{date}"
    return f"survival_model_{artifact['target_class']}_{date}"


def plan_survival_file_name(target_class: str, now: datetime | None = None) -> str:
    """The deployment plan's name of a single survival model: `survival_model_c_class_20251104.joblib`."""
    return f"survival_model_{target_class.lower()}_class_{now or datetime.now(timezone.utc):%Y%m%d}.joblib"


def save_version(
    artifacts: dict[str, dict[str, Any]], model_dir: Path, *, now: datetime | None = None,
    file_names: dict[str, str] | None = None,
) -> SavedVersion:
    """Write each artifact, hash it, name the version `v<UTC time>-<digest>`, and give files their final names:
    the plan's names with the version id, or the one `file_names` gives an artifact (with the version id added
    if a file of that name is already there: a registered file is never overwritten)."""
    file_names = file_names or {}
    if set(file_names) - set(artifacts):
        raise ValueError(f"no artifact {', '.join(sorted(set(file_names) - set(artifacts)))} to name")
    now = now or datetime.now(timezone.utc)
    model_dir.mkdir(parents=True, exist_ok=True)
    staged: dict[str, Path] = {}
    digests: dict[str, str] = {}
    for name, artifact in artifacts.items():
        path = model_dir / f".staging-{uuid.uuid4().hex}.joblib"
        joblib.dump(artifact, path, compress=3)
        staged[name] = path
        digests[name] = sha256_file(path)
    combined = hashlib.sha256("".join(digests[n] for n in sorted(digests)).encode()).hexdigest()
    version = f"v{now:%Y%m%dT%H%M%S}-{combined[:8]}"
    paths: dict[str, str] = {}
    for name, path in staged.items():
        final = model_dir / f"{file_stem(artifacts[name], f'{now:%Y%m%d}')}_{version}.joblib"
        if name in file_names:
            final = model_dir / file_names[name]
            if final.exists():
                final = model_dir / f"{Path(file_names[name]).stem}_{version}{Path(file_names[name]).suffix}"
        os.replace(path, final)
        paths[name] = str(final.resolve())
    return SavedVersion(version, paths, digests)
