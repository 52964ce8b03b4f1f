"""The bundled data sample is exactly what its manifest says: every file listed, every listed file there, each
with the size and sha256 recorded, a source and a licence."""

from __future__ import annotations

import hashlib
import json

from tests.conftest import PROJECT_ROOT

DATA_DIR = PROJECT_ROOT / "data" / "sample"
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
