"""Settings from HERALD_* environment variables, and the start-up message for bad values."""

from __future__ import annotations

import pytest

from services.sender_email.settings import EmailSenderSettings
from shared.config import ConfigurationError, load_settings
from shared.delivery import RetryPolicy

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("clean_environment")]


def test_bad_value_exits_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HERALD_SMTP_PORT", "abc")
    with pytest.raises(ConfigurationError) as caught:
        load_settings(EmailSenderSettings)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "HERALD_SMTP_PORT" in err
    assert "'abc'" in err


def test_every_bad_variable_is_named(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HERALD_SMTP_PORT", "70000")
    monkeypatch.setenv("HERALD_LOG_LEVEL", "LOUD")
    with pytest.raises(SystemExit):
        load_settings(EmailSenderSettings)
    err = capsys.readouterr().err
    assert "HERALD_SMTP_PORT" in err
    assert "HERALD_LOG_LEVEL" in err


def test_values_are_read_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_SMTP_PORT", "2525")
    monkeypatch.setenv("HERALD_SMTP_HOST", "mail.internal")
    monkeypatch.setenv("HERALD_TOPIC_PREFIX", "staging")
    monkeypatch.setenv("HERALD_KAFKA_IDEMPOTENT_PRODUCER", "false")
    monkeypatch.setenv("HERALD_SMTP_PASSWORD", "s3cret")
    # Without the prefix a variable is not ours.
    monkeypatch.setenv("SMTP_FROM", "ignored@example.com")
    settings = load_settings(EmailSenderSettings)
    assert settings.smtp_port == 2525
    assert settings.smtp_host == "mail.internal"
    assert settings.topic_prefix == "staging"
    assert settings.kafka_idempotent_producer is False
    assert settings.smtp_password is not None
    assert settings.smtp_password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    assert settings.smtp_from == "Herald <noreply@herald.local>"


def test_defaults_without_environment() -> None:
    settings = load_settings(EmailSenderSettings)
    assert settings.smtp_port == 1025
    assert settings.topic_prefix == "herald"
    assert settings.ops_port == 9103


def test_retry_policies_per_message_type_keep_the_channel_defaults_they_do_not_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HERALD_MAX_ATTEMPTS", "6")
    monkeypatch.setenv("HERALD_RETRY_POLICIES", '{"otp": {"max_attempts": 2}, "digest": {"max_delay_s": 3600}}')
    policies = load_settings(EmailSenderSettings).policies()
    assert policies.for_message({"type": "otp"}) == RetryPolicy(2, 2.0, 300.0)
    assert policies.for_message({"type": "digest"}) == RetryPolicy(6, 2.0, 3600.0)
    assert policies.for_message({}) == policies.for_message({"type": "other"}) == RetryPolicy(6, 2.0, 300.0)


def test_an_unknown_retry_setting_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HERALD_RETRY_POLICIES", '{"otp": {"attempts": 2}}')
    with pytest.raises(ConfigurationError):
        load_settings(EmailSenderSettings)
    assert "HERALD_RETRY_POLICIES" in capsys.readouterr().err
