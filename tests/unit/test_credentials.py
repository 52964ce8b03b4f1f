"""The one credential form of tokens and API keys: `[name:]secret[@expiry]`."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from shared import credentials
from shared.settings import ConfigError, load_settings

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


def test_a_credential_may_carry_a_name_and_an_expiry_that_clients_never_send():
    alice = credentials.parse("alice:s3cret@2026-12-31T00:00:00+02:00")
    assert alice.presented == "alice:s3cret" and alice.name == "alice"
    assert alice.expires_at == datetime(2026, 12, 30, 22, tzinfo=timezone.utc)
    plain = credentials.parse("just-a-secret")
    assert plain.expires_at is None and plain.name is None
    assert plain.holder("operator").startswith("operator-") and "secret" not in plain.holder("operator")


@pytest.mark.parametrize("configured, problem", [
    ("alice:s3cret@next-tuesday", "not an ISO 8601 instant"),
    ("alice:s3cret@2026-12-31", "without a time zone"),
    ("@2026-12-31T00:00:00Z", "nothing before '@'"),
])
def test_a_malformed_expiry_is_named_without_the_secret(configured, problem):
    with pytest.raises(ValueError, match=problem) as refused:
        credentials.parse(configured)
    assert "s3cret" not in str(refused.value)


def test_an_expired_credential_is_refused_saying_so_and_an_unknown_one_is_just_unknown():
    known = [credentials.parse("dave:old-s3cret@2026-01-01T00:00:00Z"), credentials.parse("erin:new-s3cret")]
    with pytest.raises(credentials.CredentialRejected,
                       match="token of dave expired at 2026-01-01T00:00:00Z") as refused:
        credentials.matching("dave:old-s3cret", known, NOW, "token")
    assert "old-s3cret" not in str(refused.value)
    with pytest.raises(credentials.CredentialRejected, match="^unknown token$"):
        credentials.matching("dave:guess", known, NOW, "token")
    assert credentials.matching("erin:new-s3cret", known, NOW) == [known[1]]


def test_a_client_presents_its_first_credential_not_yet_expired():
    configured = ["dave:old@2026-01-01T00:00:00Z", "erin:new@2027-01-01T00:00:00Z"]
    assert credentials.first_presentable(configured, NOW) == "erin:new"
    assert credentials.first_presentable(configured[:1], NOW) == "dave:old"  # the server then says it expired
    assert credentials.first_presentable([], NOW) is None


def test_settings_refuse_a_malformed_expiry_naming_the_field_and_never_the_secret(monkeypatch):
    monkeypatch.setenv("API_KEYS", '["partner:k3y-s3cret@soon"]')
    with pytest.raises(ConfigError, match="field 'api_keys': .*item 1: the credential of 'partner'") as refused:
        load_settings()
    assert "k3y-s3cret" not in str(refused.value) and refused.value.__cause__ is None


def test_commands_present_the_configured_api_key_and_flare_api_key_overrides_it(monkeypatch):
    from flare_cli import context

    monkeypatch.delenv("FLARE_API_KEY", raising=False)
    assert context.api_key(load_settings(api_keys=[])) is None  # the predictor runs without keys
    configured = load_settings(api_keys=["ops:old@2020-01-01T00:00:00Z", "ops:k3y@2099-01-01T00:00:00Z"])
    assert context.api_key(configured) == "ops:k3y"
    monkeypatch.setenv("FLARE_API_KEY", "partner:other")
    assert context.api_key(configured) == "partner:other"
