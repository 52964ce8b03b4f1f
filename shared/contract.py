"""The topics as a published contract: an AsyncAPI 3.0 document generated from the message models and the topic
registry, and the schema-evolution rule that keeps it honest.

The document says, per topic, which messages it carries (a JSON Schema each, from the pydantic models, with
its `schema_version`), how records are keyed and partitioned, which service publishes them and which consume
them, and what delivery guarantees hold. `docs/asyncapi.json` is this document for the default topic names;
the gatekeeper serves it for the deployment's own names at `GET /asyncapi.json`.

Evolution: every published message's schema is kept in `docs/schemas/<Type>.v<N>.json`. Within a
`schema_version` a message may only gain optional fields; anything else (a removed or renamed field, a changed
type, a new required field) needs a new `schema_version`, and so a new snapshot.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from shared import messages as m
from shared.paths import project_root
from shared.settings import Settings, TopicSettings
from shared.topics import TopicSpec, topic_registry

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
DOCS_DIR = project_root() / "docs"
DOCUMENT_PATH = DOCS_DIR / "asyncapi.json"
SNAPSHOT_DIR = DOCS_DIR / "schemas"
SERVICES = ("ingestor", "trainer", "predictor", "evaluator", "gatekeeper", "dashboard")

# Who sends each message and who reads each topic, as the services' code does it (tests/unit/test_contract.py
# checks the readers against the services' own subscriptions). Every service that consumes dead-letters what it
# cannot accept; the ingestor dead-letters bad input records too.
PUBLISHERS: dict[type[m.Message], tuple[str, ...]] = {
    m.FluxObserved: ("ingestor",),
    m.FlareObserved: ("ingestor",),
    m.ForecastIssued: ("predictor",),
    m.ForecastResolved: ("evaluator",),
    m.MetricsUpdated: ("evaluator",),
    m.MetricDrift: ("evaluator",),
    m.XClassFlareObserved: ("evaluator",),
    m.RetrainRequested: ("gatekeeper",),
    m.ModelTrained: ("trainer",),
    m.TrainingFailed: ("trainer",),
    m.ModelPromoted: ("gatekeeper",),
    m.ModelRolledBack: ("gatekeeper",),
    m.ChallengerChanged: ("gatekeeper",),
    m.DeadLettered: SERVICES,
}
CONSUMERS: dict[str, tuple[str, ...]] = {
    "flux": ("predictor", "evaluator", "gatekeeper", "dashboard"),
    "flares": ("predictor", "evaluator", "dashboard"),
    "forecasts": ("evaluator", "dashboard"),
    "outcomes": (),
    "metrics": ("gatekeeper", "dashboard"),
    "alerts": ("gatekeeper", "dashboard"),
    "retrain_requests": ("trainer", "dashboard"),
    "lifecycle": ("predictor", "evaluator", "gatekeeper", "dashboard"),
    "dead_letters": (),
}

DELIVERY = (
    "Delivery is at least once. A producer publishes a message (and waits for the broker's acknowledgement) before "
    "it commits the input that caused it or stores it, so a crash in between publishes the same message again; "
    "consumers commit their offsets after handling. A redelivered or replayed message carries the same "
    "`message_id`, derived from what makes the fact unique: deduplicate (or upsert) on `message_id`. "
    "Order holds within a partition; every topic has the partitions its channel binding states (one today), so "
    "a topic is read in the order it was written."
)
KEYING = (
    "Records are keyed by the field each message names in `bindings.kafka.key` (the `message_id`, except "
    "`FluxObserved`, keyed by `satellite`), as UTF-8 bytes; the partition is the Kafka default partitioner's "
    "(murmur2 of the key). Values are UTF-8 JSON objects. Headers: `message_type` (the payload's `type`) and, when "
    "set, `correlation_id` (the ingestion run a forecast and its outcome trace back to)."
)
EVOLUTION = (
    "What may change: within one `schema_version` a message only gains optional fields (with a default). A "
    "removed or renamed field, a changed type or set of allowed values, or a new required field comes with a "
    "higher `schema_version`. Read tolerantly: ignore fields you do not know, and refuse (or set aside) a "
    "`schema_version` you do not know. The Flare+ services themselves refuse unknown fields and versions: they "
    "are deployed together from one version of `shared/messages.py`. Every published schema is kept per version "
    "in `docs/schemas/` and a test fails on an incompatible change without a new version."
)


def default_settings() -> Settings:
    """Settings with the default topic names, whatever the local configuration: the committed document's."""
    return Settings.model_construct(topics=TopicSettings())


def message_schema(model: type[m.Message], ref_template: str = "#/$defs/{model}") -> dict[str, Any]:
    """The JSON Schema of one message type (pydantic's), self-contained with the default `ref_template`."""
    return model.model_json_schema(ref_template=ref_template)


def _operation_id(service: str, action: str, role: str) -> str:
    return f"{service}.{action}.{role}"


def _message_object(model: type[m.Message], spec: TopicSpec) -> dict[str, Any]:
    version = model.model_fields["schema_version"].default
    return {
        "name": model.__name__,
        "title": f"{model.__name__} v{version}",
        "summary": (model.__doc__ or spec.description).strip().splitlines()[0],
        "contentType": "application/json",
        "x-schema-version": version,
        "correlationId": {"location": "$message.payload#/correlation_id",
                          "description": "the ingestion run this message traces back to, when known"},
        "headers": {
            "type": "object",
            "properties": {
                "message_type": {"type": "string", "const": model.__name__},
                "correlation_id": {"type": "string"},
            },
            "required": ["message_type"],
        },
        "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
        "bindings": {"kafka": {
            "key": {"type": "string", "description": f"the message's `{model.KEY_FIELD}`"},
            "bindingVersion": KAFKA_BINDING_VERSION,
        }},
    }


def asyncapi_document(settings: Settings) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the registry's topics under `settings`' names."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for role, spec in topic_registry(settings).items():
        for model in spec.value_types:
            schema = message_schema(model, "#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
            messages[model.__name__] = _message_object(model, spec)
        channels[role] = {
            "address": spec.name,
            "title": role,
            "description": spec.description,
            "messages": {model.__name__: {"$ref": f"#/components/messages/{model.__name__}"}
                         for model in spec.value_types},
            "bindings": {"kafka": {
                "topic": spec.name,
                "partitions": spec.partitions,
                "replicas": 1,
                "topicConfiguration": {"cleanup.policy": [spec.cleanup_policy]},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }},
        }
        senders: dict[str, list[str]] = {}
        for model in spec.value_types:
            for service in PUBLISHERS[model]:
                senders.setdefault(service, []).append(model.__name__)
        for service, names in senders.items():
            operations[_operation_id(service, "send", role)] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{role}"},
                "summary": f"{service} publishes {', '.join(names)} to {spec.name}",
                "tags": [{"name": service}],
                "messages": [{"$ref": f"#/channels/{role}/messages/{name}"} for name in names],
            }
        for service in CONSUMERS[role]:
            operations[_operation_id(service, "receive", role)] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{role}"},
                "summary": f"{service} consumes {spec.name}",
                "tags": [{"name": service}],
            }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Flare+ topics",
            "version": _contract_version(),
            "description": (
                "The Kafka topics of Flare+, a solar-flare forecasting system, as a contract for the apps and "
                "dashboards that read them. Downstream apps mostly read `forecasts` (ForecastIssued), "
                "`metrics` (MetricsUpdated), `alerts` (MetricDrift, XClassFlareObserved) and `forecast.outcomes` "
                "(ForecastResolved).\n\n"
                f"**Delivery.** {DELIVERY}\n\n**Keys and partitions.** {KEYING}\n\n**Evolution.** {EVOLUTION}"
            ),
            "tags": [{"name": service} for service in SERVICES],
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "{bootstrap}",
                "protocol": "kafka",
                "description": "the deployment's broker (KAFKA_BOOTSTRAP_SERVERS); plaintext on loopback by default",
                "variables": {"bootstrap": {"default": "127.0.0.1:9092", "description": "host:port of a broker"}},
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def _contract_version() -> str:
    """The document's version: the sum of the messages' schema versions moves with any of them."""
    versions = {model.__name__: model.model_fields["schema_version"].default for model in m.ALL_MESSAGE_TYPES}
    return f"1.{sum(versions.values()) - len(versions)}.0"


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# ---- schema evolution -----------------------------------------------------------------------------------------


def snapshot_path(model: type[m.Message], directory: Path | None = None) -> Path:
    return (directory or SNAPSHOT_DIR) / f"{model.__name__}.v{model.model_fields['schema_version'].default}.json"


def _resolve(schema: Any, root: dict[str, Any]) -> Any:
    while isinstance(schema, dict) and "$ref" in schema:
        schema = root.get("$defs", {})[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _members(schema: Any, root: dict[str, Any]) -> list[Any]:
    schema = _resolve(schema, root)
    if isinstance(schema, dict) and ("anyOf" in schema or "oneOf" in schema):
        parts = schema["anyOf"] if "anyOf" in schema else schema["oneOf"]
        return [member for part in parts for member in _members(part, root)]
    return [schema]


def _kinds(schema: Any, root: dict[str, Any]) -> set[str]:
    """What values a schema admits, coarsely: each type (with its format) or each allowed constant."""
    kinds: set[str] = set()
    for member in _members(schema, root):
        if not isinstance(member, dict):
            kinds.add(f"schema:{member}")
        elif "const" in member:
            kinds.add(f"value {json.dumps(member['const'])}")
        elif "enum" in member:
            kinds.update(f"value {json.dumps(value)}" for value in member["enum"])
        elif "type" in member:
            types = member["type"] if isinstance(member["type"], list) else [member["type"]]
            kinds.update(f"{kind}:{member['format']}" if "format" in member else kind for kind in types)
        else:
            kinds.add("any")
    return kinds


def _only(members: list[Any], key: str) -> Any:
    found = [member for member in members if isinstance(member, dict) and key in member]
    return found[0] if len(found) == 1 else None


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """How `new` breaks readers and writers of `old` (empty when it only adds optional fields)."""
    problems: list[str] = []

    def compare(before: Any, after: Any, where: str) -> None:
        old_kinds, new_kinds = _kinds(before, old), _kinds(after, new)
        if old_kinds != new_kinds:
            problems.append(f"{where}: type changed from {sorted(old_kinds)} to {sorted(new_kinds)}")
            return
        before_members, after_members = _members(before, old), _members(after, new)
        for key, suffix in (("properties", ""), ("additionalProperties", "[*]"), ("items", "[]")):
            inner_before, inner_after = _only(before_members, key), _only(after_members, key)
            if inner_before is None or inner_after is None:
                continue
            if key == "properties":
                compare_objects(inner_before, inner_after, where)
            elif isinstance(inner_before[key], dict) and isinstance(inner_after[key], dict):
                compare(inner_before[key], inner_after[key], where + suffix)

    def compare_objects(before: dict[str, Any], after: dict[str, Any], where: str) -> None:
        prefix = f"{where}." if where else ""
        old_fields, new_fields = before["properties"], after["properties"]
        old_required, new_required = set(before.get("required", ())), set(after.get("required", ()))
        for name in old_fields:
            if name not in new_fields:
                problems.append(f"{prefix}{name}: removed (or renamed)")
            else:
                compare(old_fields[name], new_fields[name], prefix + name)
        for name in sorted(new_required - old_required):
            problems.append(f"{prefix}{name}: " + ("became required" if name in old_fields else "new required field"))

    compare(old, new, "")
    return problems


def evolution_problems(models: Iterable[type[m.Message]] = m.ALL_MESSAGE_TYPES,
                       directory: Path | None = None) -> list[str]:
    """Each message whose schema broke its snapshot for its current `schema_version`."""
    problems = []
    for model in models:
        path = snapshot_path(model, directory)
        if not path.exists():
            continue  # a new message or a new version: its first snapshot is written, nothing to break
        for problem in breaking_changes(json.loads(path.read_text()), message_schema(model)):
            problems.append(f"{model.__name__} v{path.stem.rsplit('.v', 1)[1]}: {problem}")
    return problems


def expected_files(settings: Settings | None = None) -> dict[Path, str]:
    """Every contract file as it must be committed: the document and each message's current snapshot."""
    files = {DOCUMENT_PATH: render(asyncapi_document(settings or default_settings()))}
    for model in m.ALL_MESSAGE_TYPES:
        files[snapshot_path(model)] = render(message_schema(model))
    return files


def stale_files() -> list[Path]:
    """The committed contract files that are missing or differ from what the code generates."""
    return [path for path, text in expected_files().items() if not path.exists() or path.read_text() != text]
