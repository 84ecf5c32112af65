"""Settings come from FLASHSALE_* variables and a bad value fails fast naming the variable."""

import pytest

from flashsale.common import settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLASHSALE_GATEWAY_PORT", raising=False)
    assert settings.load_settings().gateway_port == 8080


def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASHSALE_GATEWAY_PORT", "eighty")
    with pytest.raises(settings.ConfigError, match="FLASHSALE_GATEWAY_PORT"):
        settings.load_settings()


def test_missing_secret_names_the_variable() -> None:
    with pytest.raises(settings.ConfigError, match="FLASHSALE_JWT_SECRET"):
        settings.require_secret(settings.Settings().jwt_secret, "jwt_secret")


def test_the_event_batch_wait_is_a_setting_within_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASHSALE_KAFKA_EVENT_BATCH_WAIT_MS", "0")
    assert settings.load_settings().kafka_event_batch_wait_ms == 0
    monkeypatch.setenv("FLASHSALE_KAFKA_EVENT_BATCH_WAIT_MS", "5000")
    with pytest.raises(settings.ConfigError, match="FLASHSALE_KAFKA_EVENT_BATCH_WAIT_MS"):
        settings.load_settings()
