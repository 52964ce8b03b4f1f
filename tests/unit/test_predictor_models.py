"""The models serving forecasts follow the registry; a version that fails to load never replaces a working one."""

from __future__ import annotations

from services.predictor.models import ModelSlots
from shared.forecast_model import DigestMismatch
from tests.support.stream_forecasting import inline


class Model:
    def __init__(self, version: str):
        self.version = version


def loader(refused: set[str]):
    loads = []

    def load(row):
        loads.append(row["version"])
        if row["version"] in refused:
            raise DigestMismatch(f"{row['version']}: sha256 does not match the registered one")
        return Model(row["version"])
    return load, loads


async def test_a_promotion_loads_the_new_champion_and_a_replayed_old_event_changes_nothing():
    load, loads = loader(set())
    slots = ModelSlots(loader=load)
    assert await slots.reconcile({"champion": {"version": "v1"}, "challenger": None}, run=inline) == {"champion": "v1"}
    assert await slots.reconcile({"champion": {"version": "v2"}, "challenger": None}, run=inline) == {"champion": "v2"}
    assert await slots.reconcile({"champion": {"version": "v2"}, "challenger": None}, run=inline) == {}
    assert slots.versions() == {"champion": "v2", "challenger": None} and loads == ["v1", "v2"]


async def test_promoting_the_challenger_reuses_it_and_ends_its_shadow():
    load, loads = loader(set())
    slots = ModelSlots(loader=load)
    await slots.reconcile({"champion": {"version": "v1"}, "challenger": {"version": "v2"}}, run=inline)
    assert [(m.version, shadow) for m, shadow in slots.serving()] == [("v1", False), ("v2", True)]
    changed = await slots.reconcile({"champion": {"version": "v2"}, "challenger": None}, run=inline)
    assert changed == {"champion": "v2", "challenger": None}
    assert [(m.version, shadow) for m, shadow in slots.serving()] == [("v2", False)]
    assert loads == ["v1", "v2"]  # not loaded twice


async def test_a_refused_file_keeps_the_previous_champion_serving_and_says_why():
    load, _ = loader({"v2"})
    slots = ModelSlots(loader=load)
    await slots.reconcile({"champion": {"version": "v1"}, "challenger": None}, run=inline)
    changed = await slots.reconcile({"champion": {"version": "v2"}, "challenger": None}, run=inline)
    assert changed == {} and slots.champion.version == "v1"
    assert "could not load v2 as champion" in slots.problems["champion"]
    assert "does not match" in slots.problems["champion"]
