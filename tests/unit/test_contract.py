"""The topics as a contract: the committed AsyncAPI document is what the message models generate, it is valid
AsyncAPI 3.0 (checked against AsyncAPI's own JSON Schema, vendored from the `@asyncapi/specs` npm package), and
a published message changes incompatibly only with a higher `schema_version`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Literal

import jsonschema_rs
import pytest

from flare_cli.commands.contract import cmd_contract
from services.dashboard.service import TOPIC_ROLES as DASHBOARD_ROLES
from services.evaluator.service import INPUT_ROLES as EVALUATOR_ROLES
from shared import contract
from shared import messages as m
from shared.kafka import encode
from shared.topics import topic_registry

ASYNCAPI_SCHEMA = Path(__file__).resolve().parents[1] / "support" / "asyncapi" / "asyncapi-3.0.0.schema.json"


@pytest.fixture(scope="module")
def asyncapi_validator():
    return jsonschema_rs.validator_for(json.loads(ASYNCAPI_SCHEMA.read_text()))


@pytest.fixture(scope="module")
def document() -> dict:
    return json.loads(contract.DOCUMENT_PATH.read_text())


def test_the_committed_contract_is_what_the_message_models_generate():
    stale = contract.stale_files()
    assert not stale, f"run `flare contract` and commit: {[str(p) for p in stale]}"


def test_the_document_is_valid_asyncapi_3(asyncapi_validator, document):
    errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message[:200]}"
              for e in asyncapi_validator.iter_errors(document)]
    assert errors == []
    # the validator bites: an AsyncAPI 2 verb and a channel without its address's type are refused
    broken = json.loads(json.dumps(document))
    broken["operations"]["predictor.send.forecasts"]["action"] = "publish"
    broken["channels"]["alerts"]["address"] = 7
    paths = {"/".join(map(str, e.instance_path)) for e in asyncapi_validator.iter_errors(broken)}
    assert {"operations/predictor.send.forecasts", "channels/alerts"} <= paths


def _pointer(document: dict, ref: str):
    node = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_every_reference_in_the_document_resolves(document):
    refs = []

    def collect(node):
        if isinstance(node, dict):
            refs.extend([node["$ref"]] if isinstance(node.get("$ref"), str) else [])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(document)
    assert len(refs) > 50
    for ref in refs:
        assert ref.startswith("#/") and _pointer(document, ref) is not None, ref


def test_a_downstream_app_reads_what_is_on_forecasts_and_alerts(document):
    forecasts = document["channels"]["forecasts"]
    assert forecasts["address"] == "forecasts" and forecasts["bindings"]["kafka"]["partitions"] == 1
    issued = document["components"]["messages"]["ForecastIssued"]
    assert issued["x-schema-version"] == 1
    assert issued["bindings"]["kafka"]["key"]["description"] == "the message's `message_id`"
    payload = _pointer(document, issued["payload"]["$ref"])
    assert payload["properties"]["schema_version"]["const"] == 1
    assert {"message_id", "event_time", "model_version"} <= set(payload["required"])
    survival = _pointer(document, payload["properties"]["survival"]["additionalProperties"]["$ref"])
    assert "probability_within_24h" in survival["properties"]
    assert set(document["channels"]["alerts"]["messages"]) == {"MetricDrift", "XClassFlareObserved"}
    assert document["operations"]["predictor.send.forecasts"]["action"] == "send"
    assert document["operations"]["evaluator.receive.forecasts"]["action"] == "receive"
    description = document["info"]["description"]
    assert "at least once" in description and "deduplicate (or upsert) on `message_id`" in description


def test_the_published_key_is_the_one_producers_put_on_the_record():
    flux = m.FluxObserved(message_id="f1", event_time="2015-07-01T00:00:00Z", satellite="GOES-15",
                          cadence_seconds=60, scaling_era="swpc_scaled", xrsb_flux=1e-6, source="test")
    drift = m.MetricDrift(message_id="d1", event_time="2015-07-01T00:00:00Z", model_version="v1", metric="brier",
                          value=0.4, threshold=0.3, window="7d")
    assert encode(flux)[1] == b"GOES-15" and encode(drift)[1] == b"d1"
    for spec in topic_registry(contract.default_settings()).values():
        assert {model.KEY_FIELD for model in spec.value_types} == {spec.key}, spec.name


def test_the_readers_named_in_the_contract_are_the_services_subscriptions():
    for role, readers in contract.CONSUMERS.items():
        assert ("evaluator" in readers) == (role in EVALUATOR_ROLES), role
        assert ("dashboard" in readers) == (role in DASHBOARD_ROLES), role
    assert set(contract.PUBLISHERS) == set(m.ALL_MESSAGE_TYPES)


# ---- schema evolution ---------------------------------------------------------------------------------------


def test_every_published_message_has_a_snapshot_of_its_version_and_only_grew_compatibly():
    for model in m.ALL_MESSAGE_TYPES:
        assert contract.snapshot_path(model).exists(), f"no snapshot of {model.__name__}: run `flare contract`"
    assert contract.evolution_problems() == []


class WithOptionalNote(m.ForecastIssued):
    note: str | None = None


class HorizonAsText(m.ForecastIssued):
    horizon_hours: str = "168"


class NewRequiredField(m.ForecastIssued):
    region: str


class NewStatus(m.ForecastIssued):
    status: Literal["ok", "insufficient_data", "stale"] = "ok"


class VersionTwo(m.ForecastIssued):
    schema_version: Literal[2] = 2
    horizon_hours: str = "168"


def test_the_checker_passes_an_added_optional_field_and_catches_each_breaking_change():
    published = contract.message_schema(m.ForecastIssued)
    assert contract.breaking_changes(published, contract.message_schema(WithOptionalNote)) == []
    assert contract.breaking_changes(published, contract.message_schema(HorizonAsText)) == [
        "horizon_hours: type changed from ['integer'] to ['string']"]
    assert contract.breaking_changes(published, contract.message_schema(NewRequiredField)) == [
        "region: new required field"]
    assert contract.breaking_changes(published, contract.message_schema(NewStatus)) == [
        "status: type changed from ['value \"insufficient_data\"', 'value \"ok\"'] to "
        "['value \"insufficient_data\"', 'value \"ok\"', 'value \"stale\"']"]
    # a changed version is a changed constant too: a new version is compared with nothing but its own snapshot
    assert "schema_version: type changed from ['value 1'] to ['value 2']" in contract.breaking_changes(
        published, contract.message_schema(VersionTwo))

    renamed = json.loads(json.dumps(published))
    renamed["properties"]["version_of_model"] = renamed["properties"].pop("model_version")
    renamed["required"] = [name.replace("model_version", "version_of_model") for name in renamed["required"]]
    assert contract.breaking_changes(published, renamed) == [
        "model_version: removed (or renamed)", "version_of_model: new required field"]

    nested = json.loads(json.dumps(published))
    nested["$defs"]["SurvivalForecast"]["properties"]["hazard_score"] = {"type": "string"}
    del nested["$defs"]["SurvivalForecast"]["properties"]["time_points_hours"]
    assert contract.breaking_changes(published, nested) == [
        "survival[*].time_points_hours: removed (or renamed)",
        "survival[*].hazard_score: type changed from ['number'] to ['string']"]

    optional_made_required = json.loads(json.dumps(published))
    optional_made_required["required"].append("reason")
    assert contract.breaking_changes(published, optional_made_required) == ["reason: became required"]


def flare_contract(check: bool = False) -> int:
    """`flare contract [--check]`'s handler (flare's main would configure the process's logging for the CLI)."""
    return cmd_contract(argparse.Namespace(check=check))


def test_flare_contract_writes_the_files_and_refuses_a_breaking_change(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(contract, "DOCS_DIR", tmp_path)
    monkeypatch.setattr(contract, "DOCUMENT_PATH", tmp_path / "asyncapi.json")
    monkeypatch.setattr(contract, "SNAPSHOT_DIR", tmp_path / "schemas")
    assert flare_contract(check=True) == 1
    assert flare_contract() == 0
    written = json.loads((tmp_path / "asyncapi.json").read_text())
    assert written == contract.asyncapi_document(contract.default_settings())
    assert flare_contract(check=True) == 0
    # the v1 snapshot had a field the code no longer has: refused, nothing written
    snapshot = tmp_path / "schemas" / "ForecastIssued.v1.json"
    published = json.loads(snapshot.read_text())
    published["properties"]["lead_time_hours"] = {"type": "integer"}
    snapshot.write_text(json.dumps(published))
    capsys.readouterr()
    assert flare_contract() == 1
    assert "ForecastIssued v1: lead_time_hours: removed (or renamed)" in capsys.readouterr().err
    assert "lead_time_hours" in snapshot.read_text()
