"""Messages are frozen, versioned, carry stable ids, and bad records are refused with a reason."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared import messages as m
from shared.kafka import (
    CORRELATION_HEADER, Refused, Rejected, accept_record, decode, decode_with_care, dead_letter_for, encode,
    handler_failed,
)
from shared.settings import load_settings
from shared.topics import topic_registry
from tests.support.message_strategies import valid

TOPICS = topic_registry(load_settings())


def promoted(version: str = "v2") -> m.ModelPromoted:
    return m.ModelPromoted(
        message_id=m.stable_id("promote", version), event_time=datetime(2015, 7, 1, tzinfo=timezone.utc),
        correlation_id="op-42", version=version, previous_version="v1", actor="alice", reason="better Brier",
    )


def test_a_message_survives_the_wire_with_its_correlation_id_in_the_headers():
    message = promoted()
    value, key, headers = encode(message)
    assert (CORRELATION_HEADER, b"op-42") in headers
    assert decode(TOPICS["lifecycle"], value, headers) == message


def test_the_correlation_id_in_the_header_fills_a_message_that_lacks_one():
    value, _, _ = encode(promoted().model_copy(update={"correlation_id": None}))
    decoded = decode(TOPICS["lifecycle"], value, [(CORRELATION_HEADER, b"from-header")])
    assert decoded.correlation_id == "from-header"


def test_messages_are_frozen_and_ids_are_stable():
    message = promoted()
    with pytest.raises(ValidationError):
        message.version = "v3"  # type: ignore[misc]
    assert m.stable_id("promote", "v2") == message.message_id
    assert m.stable_id("promote", "v3") != message.message_id


def test_naive_times_are_refused_and_aware_ones_become_utc():
    with pytest.raises(ValidationError):
        m.RetrainRequested(message_id="r", event_time=datetime(2015, 1, 1), reason="x", requested_by="y")
    local = datetime.fromisoformat("2015-01-01T02:00:00+02:00")
    request = m.RetrainRequested(message_id="r", event_time=local, reason="x", requested_by="y")
    assert request.event_time == datetime(2015, 1, 1, tzinfo=timezone.utc)
    assert request.event_time.utcoffset().total_seconds() == 0


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"{oops", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (None, "tombstone"),
        (b'{"type": "MetricDrift", "message_id": "x", "event_time": "2015-01-01T00:00:00Z"}', "does not match"),
    ],
)
def test_bad_records_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(Rejected, match=reason):
        decode(TOPICS["lifecycle"], raw)


def test_a_message_of_another_topic_is_rejected():
    value, _, headers = encode(promoted())
    with pytest.raises(Rejected, match="does not match FluxObserved"):
        decode(TOPICS["flux"], value, headers)


def test_a_dead_letter_keeps_the_original_bytes_and_reason():
    dead = dead_letter_for("predictor", "xrs.flux", b'{"bad": 1}', "does not match", partition=0, offset=7)
    again = dead_letter_for("predictor", "xrs.flux", b'{"bad": 1}', "does not match", partition=0, offset=7)
    assert dead.raw_value == '{"bad": 1}' and dead.offset == 7
    assert dead.message_id == again.message_id, "a redelivered bad record is the same dead letter"


def test_a_consumer_gets_the_message_of_a_good_record_and_the_dead_letter_of_a_bad_one():
    value, _, headers = encode(promoted())
    assert accept_record("gatekeeper", TOPICS["lifecycle"], value, headers, partition=0, offset=3) == promoted()

    outcome = accept_record("gatekeeper", TOPICS["lifecycle"], b"{not json", [(CORRELATION_HEADER, b"op-42")],
                            partition=0, offset=4)
    assert isinstance(outcome, Refused)
    refused = outcome.dead_letter
    assert (refused.service, refused.source_topic, refused.offset) == ("gatekeeper", TOPICS["lifecycle"].name, 4)
    assert refused.reason.startswith("not JSON") and refused.raw_value == "{not json"
    assert refused.correlation_id == "op-42", "the dead letter follows the record's correlation id"


def test_a_dead_letter_read_from_the_dead_letter_topic_is_accepted_not_refused_again():
    dead = dead_letter_for("predictor", "xrs.flux", b'{"bad": 1}', "does not match", partition=0, offset=7)
    value, _, headers = encode(dead)
    assert accept_record("auditor", TOPICS["dead_letters"], value, headers, partition=0, offset=0) == dead


def test_a_message_its_handler_failed_on_is_set_aside_with_the_failure_as_its_reason():
    try:
        raise KeyError("C")
    except KeyError as exc:
        dead = handler_failed("evaluator", "xrs.forecasts", b'{"type": "ForecastIssued"}', exc, partition=0,
                              offset=9, correlation_id="op-7")
    assert dead.reason == "evaluator failed on it: KeyError: 'C'"
    assert (dead.raw_value, dead.offset, dead.correlation_id) == ('{"type": "ForecastIssued"}', 9, "op-7")


def test_every_message_type_belongs_to_a_topic():
    carried = {t for spec in TOPICS.values() for t in spec.value_types}
    assert carried == set(m.ALL_MESSAGE_TYPES)


@pytest.mark.parametrize("topic", sorted(TOPICS))
@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), header_cid=st.sampled_from([None, b"from-header"]), drop_cid=st.booleans())
def test_a_record_read_in_one_pass_is_the_message_read_with_care(topic, data, header_cid, drop_cid):
    """The one-pass read of the common record is only a shortcut: every field comes out as the careful read has it,
    the header's correlation id included."""
    spec = TOPICS[topic]
    message = data.draw(st.one_of([valid(t) for t in spec.value_types]))
    if drop_cid:
        message = message.model_copy(update={"correlation_id": None})
    raw = encode(message)[0]
    headers = [(CORRELATION_HEADER, header_cid)] if header_cid else []
    assert decode(spec, raw, headers) == decode_with_care(spec, raw, header_cid)
    filled_from_header = header_cid is not None and not message.correlation_id
    expected_cid = header_cid.decode() if filled_from_header and header_cid else message.correlation_id
    assert decode(spec, raw, headers).correlation_id == expected_cid
