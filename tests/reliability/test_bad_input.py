"""Bad input (issue #9): whatever a producer or an HTTP client sends, no service crashes, no API answers 5xx,
and every rejected record is in the dead-letter topic with a reason naming what was wrong.

Messages: hypothesis draws valid messages of every type (from the pydantic models and their constraints) and
malformed records of every kind (random bytes, cut-off JSON, wrong shape, wrong schema version, a missing
field, an implausible event time, a huge string, NaN, deep nesting, NUL, tombstones); they go through the real
broker to the services that consume each topic, run as processes. In `make test` these are the gatekeeper and
the dashboard (aiokafka `TypedConsumer`), which between them read all seven consumed topics; under
`make reliability` also the evaluator and the predictor (faust `Acceptor`) and the trainer. Every consumer must
dead-letter each malformed record with its reason, accept each valid one, and still be alive and handling a
good message afterwards. The outcomes and dead-letter topics have no consumer, so there is nothing to fuzz
behind them.

REST: schemathesis against the OpenAPI of the predictor, evaluator, gatekeeper and dashboard processes, on the
real database with a champion model, with an operator token and an API key: no 5xx, responses as documented
(a few examples per operation in `make test`, 300 under `make reliability`). The database holds no flux, so the
predictor answers every forecast request that gets past validation with its 422 "no flux observations": its
computation with fuzzed buckets is not reached here.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import AsyncIterator, Callable

import pytest
import schemathesis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from hypothesis import HealthCheck, Phase, given, settings as hypothesis_settings, strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from shared import messages as m
from shared.kafka import Rejected, decode, encode, ensure_topics
from shared.settings import Settings, TopicSettings, load_settings
from shared.topics import TopicSpec, topic_registry
from tests.conftest import DATA_DIR
from tests.support.message_strategies import IMPLAUSIBLE_EVENT_TIMES, valid
from tests.support.predictor_models import register_model
from tests.support.service_process import ServiceProcess

OPERATOR = "fuzz-operator:fuzz-operator-secret"
API_KEY = "fuzz-client:fuzz-client-key"
# the topics each service consumes (as in its code)
CONSUMERS = {
    "gatekeeper": ("alerts", "lifecycle", "metrics", "flux"),
    "dashboard": ("flux", "flares", "forecasts", "metrics", "lifecycle", "retrain_requests", "alerts"),
    "evaluator": ("forecasts", "flux", "flares", "lifecycle"),
    "predictor": ("flux", "flares", "lifecycle"),
    "trainer": ("retrain_requests",),
}
# in `make test`: two consumers that are quick to start and between them read every consumed topic
SHORT_RUN_CONSUMERS = ("gatekeeper", "dashboard")
REST_SERVICES = ("predictor", "evaluator", "gatekeeper", "dashboard")
DEEPLY_NESTED = b"[" * 5000 + b"]" * 5000


# ---- the records ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Record:
    """One record as produced; `reason` is a pattern the dead letter's reason must match, None for a valid one."""

    value: bytes | None
    reason: str | None
    kind: str


def _as_json(message: m.Message) -> dict:
    return json.loads(encode(message)[0])


def malformed(spec: TopicSpec) -> st.SearchStrategy[Record]:
    """Each kind of bad record for `spec`'s topic, derived from a valid message of the topic where it needs one."""
    base = st.one_of([valid(t) for t in spec.value_types]).map(_as_json)

    def without_field(payload: dict, data) -> Record:
        name = data.draw(st.sampled_from(sorted(k for k in payload if k != "type" and _required(payload["type"], k))))
        del payload[name]
        return Record(json.dumps(payload).encode(), rf"{name}: Field required", "missing field")

    def with_field(name: str, strategy, reason: str, kind: str):
        return st.tuples(base, strategy).map(
            lambda pair: Record(json.dumps({**pair[0], name: pair[1]}, default=str).encode(), reason, kind))

    return st.one_of(
        st.binary(min_size=1).filter(_not_json).map(lambda raw: Record(raw, r"^not JSON", "random bytes")),
        st.tuples(base, st.floats(0, 0.99)).map(lambda pair: _cut(pair[0], pair[1])),
        st.one_of(st.lists(st.integers()), st.text(), st.integers(), st.booleans()).map(
            lambda value: Record(json.dumps(value).encode(), r"expected a JSON object", "wrong shape")),
        with_field("schema_version", st.integers().filter(lambda v: v != 1), r"schema_version: ",
                   "wrong schema version"),
        st.tuples(base, st.data()).map(lambda pair: without_field(*pair)),
        with_field("event_time", IMPLAUSIBLE_EVENT_TIMES.map(datetime.isoformat),
                   r"event_time: .*(not a plausible event time|out of range)", "implausible event time"),
        with_field("message_id", st.integers(m.MAX_TEXT_CHARS + 1, 3 * m.MAX_TEXT_CHARS).map("x".__mul__),
                   rf"message_id: String should have at most {m.MAX_TEXT_CHARS} characters", "huge string"),
        base.map(lambda payload: Record(json.dumps({**payload, "message_id": "@"}).replace('"@"', "NaN").encode(),
                                        r"NaN is not a JSON number", "NaN")),
        base.map(lambda payload: Record(json.dumps({**payload, "message_id": "a\ud800\x00"}).encode(),
                                        r"cannot be stored", "NUL and lone surrogate")),
        st.just(Record(DEEPLY_NESTED, r"nested too deeply", "deep nesting")),
        st.just(Record(None, r"empty value \(tombstone\)", "tombstone")),
    )


def _required(type_name: str, field: str) -> bool:
    model = next(t for t in m.ALL_MESSAGE_TYPES if t.__name__ == type_name)
    return model.model_fields[field].is_required()


def _not_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return True
    return False


def _cut(payload: dict, fraction: float) -> Record:
    text = json.dumps(payload).encode()
    return Record(text[: int(len(text) * fraction)] or b"{", r"^not JSON", "cut-off JSON")


def draw(strategy: st.SearchStrategy, count: int) -> list:
    """`count` examples of `strategy`, the same on every run (derandomized), drawn by hypothesis's own engine so
    that its edge cases come along; the broker then gets them all in one go."""
    found: list = []

    @hypothesis_settings(max_examples=count, derandomize=True, database=None, deadline=None,
                         phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(example) -> None:
        found.append(example)

    collect()
    return found[:count]


def valid_records(spec: TopicSpec, count: int) -> list[Record]:
    return [Record(encode(message)[0], None, type(message).__name__)
            for message in draw(st.one_of([valid(t) for t in spec.value_types]), count)]


# ---- the services ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fuzz_settings(stack, state_dir, tmp_path_factory) -> Settings:
    """Settings of this module alone (its own topics and model folder), shared by the services it starts."""
    return load_settings(kafka_bootstrap_servers=stack.kafka_bootstrap_servers, database_url=stack.database_url,
                         state_dir=state_dir, model_path=tmp_path_factory.mktemp("fuzz-models"), data_dir=DATA_DIR,
                         topics=_own_topics("fuzz"))


def _own_topics(prefix: str) -> TopicSettings:
    suffix = f"{prefix}-{uuid.uuid4().hex[:8]}"
    return TopicSettings(**{name: f"{value}.{suffix}" for name, value in TopicSettings().model_dump().items()})


@pytest.fixture(scope="module")
def fuzzed_consumers(full_run) -> tuple[str, ...]:
    """The services the malformed records are sent to."""
    return tuple(CONSUMERS) if full_run else SHORT_RUN_CONSUMERS


@pytest.fixture(scope="module")
async def services(fuzz_settings, db_pool, fuzzed_consumers,
                   tmp_path_factory) -> AsyncIterator[dict[str, ServiceProcess]]:
    """The fuzzed consumers and the REST services as processes, started together, on a database with a champion
    model (so the predictor's API goes past its 503). A REST service whose consumers are not fuzzed in this run
    reads topics of its own, which nobody writes to."""
    async with db_pool.acquire() as conn:
        await conn.execute("TRUNCATE flux_observations, flare_events, forecast_log, forecast_outcomes, model_versions, "
                           "model_status, retrain_requests, model_metrics, gatekeeper_metrics, retrain_triggers, "
                           "gatekeeper_outbox, gatekeeper_clock")
        await register_model(conn, fuzz_settings.model_path, status="champion")
    await ensure_topics(fuzz_settings.kafka_bootstrap_servers, topic_registry(fuzz_settings).values())
    idle = fuzz_settings.model_copy(update={"topics": _own_topics("fuzz-idle")})
    logs = tmp_path_factory.mktemp("fuzz-logs")
    tag = uuid.uuid4().hex[:8]
    env = {"OPERATOR_TOKENS": json.dumps([OPERATOR]), "VIEWER_TOKENS": "[]", "API_KEYS": json.dumps([API_KEY]),
           "PREDICTOR__RATE_LIMIT_PER_MINUTE": "100000", "PREDICTOR__APP_NAME": f"predictor-{tag}",
           "EVALUATOR__APP_NAME": f"evaluator-{tag}", "GATEKEEPER__CONSUMER_GROUP": f"gatekeeper-{tag}"}
    running = {name: ServiceProcess(name, fuzz_settings if name in fuzzed_consumers else idle, logs / f"{name}.log",
                                    **env)
               for name in dict.fromkeys([*fuzzed_consumers, *REST_SERVICES])}
    for service in running.values():
        service.start()
    try:
        await asyncio.gather(*(service.ready(timeout=240) for service in running.values() if service.url))
        yield running
    finally:
        for service in running.values():
            service.stop()


# ---- messages ----------------------------------------------------------------------------------------------

async def produce(bootstrap: str, topic: str, records: list[Record]) -> list[int]:
    """Send the records in order with random keys; their offsets."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topic, record.value, key=uuid.uuid4().bytes) for record in records]
        return [(await future).offset for future in futures]
    finally:
        await producer.stop()


def decoded_or_none(spec, raw: bytes | None, headers) -> m.Message | None:
    try:
        return decode(spec, raw, headers)
    except Rejected:
        return None


async def read_all(settings: Settings, role: str, enough: Callable[[list], bool], timeout: float) -> list[m.Message]:
    """The topic's messages from the beginning, until `enough` says so (or fail after `timeout`); the malformed
    records this test put on the topic itself are passed over."""
    spec = topic_registry(settings)[role]
    consumer = AIOKafkaConsumer(spec.name, bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", group_id=None, max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    found: list[m.Message] = []
    try:
        async with asyncio.timeout(timeout):
            while not enough(found):
                batch = await consumer.getmany(timeout_ms=1000)
                found += [message for rs in batch.values() for r in rs
                          if (message := decoded_or_none(spec, r.value, r.headers)) is not None]
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return found


async def count_valid(settings: Settings, roles: tuple[str, ...]) -> int:
    """How many records in the topics decode as messages, from the beginning to what is there now."""
    specs = topic_registry(settings)
    by_name = {specs[role].name: specs[role] for role in roles}
    consumer = AIOKafkaConsumer(*by_name, bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", group_id=None, max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    count = 0
    try:
        while batch := await consumer.getmany(timeout_ms=1000):
            for records in batch.values():
                count += sum(1 for r in records if _decodes(by_name[r.topic], r))
    finally:
        await consumer.stop()
    return count


def _decodes(spec: TopicSpec, record) -> bool:
    try:
        decode(spec, record.value, record.headers)
    except Rejected:
        return False
    return True


def sentinels(now: datetime) -> dict[str, m.Message]:
    """One good message per topic, sent after the fuzz: a consumer that handles it is still alive and in order."""
    flare_id = m.stable_id("fuzz-sentinel-flare", now)
    return {
        "alerts": m.MetricDrift(message_id=m.stable_id("fuzz-sentinel-drift", now), event_time=now, model_version="v",
                                metric="C.brier", value=0.3, baseline=0.1, threshold=0.11, window="30d"),
        "flares": m.FlareObserved(message_id=flare_id, event_time=now, start_time=now - timedelta(minutes=9),
                                  peak_time=now, goes_class="X2.1", class_letter="X", peak_flux=2.1e-4, source="fuzz"),
        "retrain_requests": m.RetrainRequested(message_id=m.stable_id("fuzz-sentinel-retrain", now), event_time=now,
                                               reason="fuzz sentinel: nothing to train on before 1971",
                                               requested_by="fuzz",
                                               train_until=datetime(1971, 1, 1, tzinfo=timezone.utc)),
    }


async def test_every_malformed_record_is_dead_lettered_with_its_reason_and_every_consumer_keeps_going(
        fuzz_settings, services, fuzzed_consumers, db_pool, full_run):
    per_topic = (60, 20) if full_run else (12, 4)  # (malformed, valid) records per topic
    specs = topic_registry(fuzz_settings)
    consumers = {name: services[name] for name in fuzzed_consumers}
    roles = sorted({role for name in consumers for role in CONSUMERS[name]})
    sent: dict[str, list[tuple[int, Record]]] = {}
    for role in roles:
        records = draw(malformed(specs[role]), per_topic[0]) + valid_records(specs[role], per_topic[1])
        records.sort(key=lambda record: hash(record.value))  # valid and malformed interleaved
        sent[role] = list(zip(await produce(fuzz_settings.kafka_bootstrap_servers, specs[role].name, records), records))

    now = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    last = sentinels(now)
    for role, message in last.items():
        if role in roles:
            await produce(fuzz_settings.kafka_bootstrap_servers, specs[role].name,
                          [Record(encode(message)[0], None, "sentinel")])

    expected = {(name, specs[role].name, offset): record
                for name in consumers for role in CONSUMERS[name]
                for offset, record in sent[role] if record.reason is not None}
    dead = await read_all(fuzz_settings, "dead_letters", lambda found: set(expected) <= {
        (d.service, d.source_topic, d.offset) for d in found}, timeout=240)
    found = {(d.service, d.source_topic, d.offset): d for d in dead}

    missing = [(key, record.kind) for key, record in expected.items() if key not in found]
    assert not missing, f"{len(missing)} malformed records not dead-lettered, e.g. {missing[:5]}"
    wrong_reason = [(key, record.kind, found[key].reason[:200]) for key, record in expected.items()
                    if not re.search(record.reason, found[key].reason)]
    assert not wrong_reason, f"dead letters whose reason does not say what was wrong: {wrong_reason[:5]}"
    unexpected = [(d.service, d.source_topic, d.offset, d.reason[:200]) for d in dead
                  if (d.service, d.source_topic, d.offset) not in expected]
    assert not unexpected, f"good records dead-lettered: {unexpected[:5]}"
    assert all(len(d.raw_value) <= m.MAX_TEXT_CHARS for d in dead)

    await every_consumer_is_alive_and_handled_the_sentinels(fuzz_settings, consumers, db_pool, sent, last)


async def every_consumer_is_alive_and_handled_the_sentinels(settings, services, db_pool, sent, last) -> None:
    dashboard_topics = CONSUMERS["dashboard"]
    rejected = sum(1 for role in dashboard_topics for _, r in sent.get(role, []) if r.reason is not None)
    dashboard = services["dashboard"]

    async def dashboard_caught_up() -> dict | None:
        # the good records in its topics: ours, the sentinels, and what the other services published there
        accepted = await count_valid(settings, dashboard_topics)
        return await _health_when(dashboard, lambda h: (h["consumed"], h["rejected"]) == (accepted, rejected))
    await dashboard.until(dashboard_caught_up, "dashboard consuming every good record and only those", interval=2)

    async def drift_sentinel_recorded() -> bool:
        async with db_pool.acquire() as conn:
            return bool(await conn.fetchval("SELECT count(*) FROM retrain_triggers WHERE trigger_id = $1",
                                            last["alerts"].message_id))
    await services["gatekeeper"].until(drift_sentinel_recorded, "gatekeeper handling the drift sentinel")

    if "evaluator" in services:
        flare_id = last["flares"].message_id
        alerts = await read_all(settings, "alerts", lambda found: any(
            isinstance(a, m.XClassFlareObserved) and a.flare_id == flare_id for a in found), timeout=120)
        assert any(isinstance(a, m.XClassFlareObserved) and a.flare_id == flare_id for a in alerts), \
            f"the evaluator raised no alert for the X-class sentinel; its log:\n{services['evaluator'].log_tail()}"

    if "trainer" in services:
        request_id = last["retrain_requests"].message_id
        answers = await read_all(settings, "lifecycle", lambda found: any(
            getattr(a, "request_id", None) == request_id for a in found), timeout=120)
        assert any(getattr(a, "request_id", None) == request_id for a in answers), "the trainer did not answer"
    if "predictor" in services:
        assert await services["predictor"].health() is not None, \
            f"the predictor stopped answering; its log:\n{services['predictor'].log_tail()}"
    for name, service in services.items():
        assert service.alive, f"the {name} died; its log:\n{service.log_tail()}"


async def _health_when(service: ServiceProcess, condition) -> dict | None:
    health = await service.health()
    return health if health is not None and condition(health) else None


# ---- REST --------------------------------------------------------------------------------------------------

CREDENTIALS = {"predictor": {"X-API-Key": API_KEY}, "gatekeeper": {"Authorization": f"Bearer {OPERATOR}"}}


@pytest.mark.parametrize("name", REST_SERVICES)
def test_no_api_answers_5xx_or_off_its_documented_schema(name, services, full_run):
    """Each operation of the service's own OpenAPI document, as it serves it, called with what schemathesis
    generates (valid and invalid), with the credentials a client holds."""
    schema = schemathesis.openapi.from_url(f"{services[name].url}/openapi.json")
    schema.config.update(headers=CREDENTIALS.get(name, {}), request_timeout=30)
    if name == "dashboard":
        schema = schema.exclude(path="/events")  # an event stream that never ends by design
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, f"the {name} documents no operation"
    for operation in operations:
        @hypothesis_settings(max_examples=300 if full_run else 5, derandomize=True, database=None, deadline=None,
                             suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def call(case) -> None:
            case.call_and_validate(checks=[not_a_server_error, response_schema_conformance, content_type_conformance])

        call()
