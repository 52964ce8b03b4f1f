"""The bundled data sample is exactly what its manifest says: every file listed, every listed file there, each
with the size and sha256 recorded, a source and a licence; and the settings read it by default."""

from __future__ import annotations

import hashlib
import json

from shared.settings import load_settings
from tests.conftest import DATA_DIR, PROJECT_ROOT

MANIFEST = DATA_DIR / "MANIFEST.json"


def manifest() -> dict:
    return json.loads(MANIFEST.read_text())


def test_every_file_of_the_sample_is_in_the_manifest_and_every_listed_file_exists():
    on_disk = {p.relative_to(DATA_DIR).as_posix() for p in DATA_DIR.rglob("*") if p.is_file()} - {"MANIFEST.json"}
    listed = [entry["path"] for entry in manifest()["files"]]
    assert len(listed) == len(set(listed)), "a file is listed twice"
    assert sorted(on_disk - set(listed)) == [], "files in data/sample/ that the manifest does not list"
    assert sorted(set(listed) - on_disk) == [], "files the manifest lists that are missing"


def test_each_file_has_the_size_and_sha256_the_manifest_records():
    wrong = []
    for entry in manifest()["files"]:
        data = (DATA_DIR / entry["path"]).read_bytes()
        if (len(data), hashlib.sha256(data).hexdigest()) != (entry["bytes"], entry["sha256"]):
            wrong.append(entry["path"])
    assert wrong == []


def test_each_file_says_where_it_came_from_under_which_licence_and_how_it_was_cut():
    files = manifest()["files"]
    for entry in files:
        assert all(entry[key].strip() for key in ("source", "licence", "what", "cut")), entry["path"]
    assert {e["licence"] for e in files if e["path"].startswith("flare_lists/swpc_flarelist_sc24")} == {
        "MIT (flare_lists/LICENSE.hayesla_flare_forecast_proj)"}
    assert (DATA_DIR / "flare_lists" / "LICENSE.hayesla_flare_forecast_proj").read_text().startswith("MIT License")
    assert manifest()["total_bytes"] == sum(e["bytes"] for e in files) < 8_000_000  # "a few MB"


def test_the_settings_read_the_sample_by_default_and_the_reference_set_only_when_asked(monkeypatch, tmp_path):
    monkeypatch.delenv("DATA_DIR", raising=False)
    monkeypatch.delenv("REFERENCE_DATA_DIR", raising=False)
    monkeypatch.setenv("FLARE_CONFIG", str(tmp_path / "none.yaml"))
    monkeypatch.setenv("FLARE_ENV_FILE", str(tmp_path / "none.env"))
    monkeypatch.chdir(tmp_path)  # resolved against the project root, not the working directory
    settings = load_settings()
    assert settings.data_dir == DATA_DIR == PROJECT_ROOT / "data" / "sample"
    assert settings.reference_data_dir is None
    monkeypatch.setenv("REFERENCE_DATA_DIR", "/nonexistent")
    assert load_settings().reference_data_dir.as_posix() == "/nonexistent"
