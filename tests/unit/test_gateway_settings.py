"""The gateway's security settings: limits, CORS origins, and the TLS pair checked at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.standins.tls import local_server_context
from services.gateway.settings import GatewaySettings, TenantRateLimits
from shared.config import ConfigurationError, load_settings

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("clean_environment")]


def test_limits_default_to_100_a_minute_per_key_and_tenant_and_no_global_one() -> None:
    settings = load_settings(GatewaySettings)
    assert (settings.rate_limit_per_key, settings.rate_limit_per_tenant, settings.rate_limit_global) == (100, 100, 0)
    assert settings.cors_origins == []
    assert settings.gateway_tls_cert_file is None


def test_origins_are_a_comma_list_and_tenant_limits_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_CORS_ORIGINS", "https://app.example.com, https://admin.example.com,")
    monkeypatch.setenv("HERALD_RATE_LIMIT_TENANTS", '{"acme": {"per_tenant": 1200}}')
    settings = load_settings(GatewaySettings)
    assert settings.cors_origins == ["https://app.example.com", "https://admin.example.com"]
    assert settings.rate_limit_tenants == {"acme": TenantRateLimits(per_tenant=1200)}


@pytest.mark.parametrize(
    "variables",
    [
        pytest.param({"HERALD_RATE_LIMIT_PER_KEY": "-1"}, id="negative"),
        pytest.param({"HERALD_RATE_LIMIT_GLOBAL": "60000001"}, id="beyond-a-microsecond-interval"),
        pytest.param({"HERALD_RATE_LIMIT_TENANTS": '{"acme": {"per_day": 5}}'}, id="unknown-field"),
    ],
)
def test_bad_limits_stop_start_up(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError):
        load_settings(GatewaySettings)


def test_a_readable_certificate_and_key_are_accepted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    local_server_context(tmp_path, "Herald test CA")
    monkeypatch.setenv("HERALD_GATEWAY_TLS_CERT_FILE", str(tmp_path / "server.pem"))
    monkeypatch.setenv("HERALD_GATEWAY_TLS_KEY_FILE", str(tmp_path / "server-key.pem"))
    settings = load_settings(GatewaySettings)
    assert settings.gateway_tls_key_file == tmp_path / "server-key.pem"


@pytest.mark.parametrize(
    ("cert", "key", "message"),
    [
        pytest.param("server.pem", None, "set both", id="certificate-alone"),
        pytest.param(None, "server-key.pem", "set both", id="key-alone"),
        pytest.param("server.pem", "missing.pem", "No such file", id="missing-key"),
        pytest.param("server.pem", "ca.pem", "cannot load certificate", id="not-a-key"),
    ],
)
def test_a_bad_tls_pair_stops_start_up_naming_it(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    cert: str | None,
    key: str | None,
    message: str,
) -> None:
    local_server_context(tmp_path, "Herald test CA")
    if cert is not None:
        monkeypatch.setenv("HERALD_GATEWAY_TLS_CERT_FILE", str(tmp_path / cert))
    if key is not None:
        monkeypatch.setenv("HERALD_GATEWAY_TLS_KEY_FILE", str(tmp_path / key))
    with pytest.raises(ConfigurationError):
        load_settings(GatewaySettings)
    err = capsys.readouterr().err
    assert "HERALD_GATEWAY_TLS_KEY_FILE" in err
    assert message in err
