"""The Kafka connection settings: which combinations start, which are refused naming the variable, and
what every aiokafka client is built with."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError

from infra.standins.tls import LocalCa
from shared.kafka.connection import ClientCredentialsTokenProvider, KafkaConnectionSettings, client_options

pytestmark = pytest.mark.unit


def settings(**values: object) -> KafkaConnectionSettings:
    return KafkaConnectionSettings.model_validate({"kafka_bootstrap_servers": "kafka:9093", **values})


def test_plaintext_by_default_gives_only_the_servers_and_the_protocol() -> None:
    assert client_options(settings()) == {"bootstrap_servers": "kafka:9093", "security_protocol": "PLAINTEXT"}


def test_scram_over_tls_gives_a_verifying_context_and_the_credentials(tmp_path: Path) -> None:
    ca = LocalCa(tmp_path, "Kafka test CA")
    options = client_options(
        settings(
            kafka_security_protocol="SASL_SSL",
            kafka_ssl_ca_file=ca.ca_file,
            kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_sasl_username="herald",
            kafka_sasl_password="s3cret",
        )
    )
    context = options.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert options == {
        "bootstrap_servers": "kafka:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "herald",
        "sasl_plain_password": "s3cret",
    }


def test_a_client_certificate_and_no_hostname_check_reach_the_context(tmp_path: Path) -> None:
    ca = LocalCa(tmp_path, "Kafka test CA")
    certificate, key = ca.client_certificate("herald")
    options = client_options(
        settings(
            kafka_security_protocol="SSL",
            kafka_ssl_ca_file=ca.ca_file,
            kafka_ssl_cert_file=certificate,
            kafka_ssl_key_file=key,
            kafka_ssl_check_hostname=False,
        )
    )
    assert not options["ssl_context"].check_hostname
    assert "sasl_mechanism" not in options


def test_oauthbearer_gets_a_client_credentials_token_provider() -> None:
    options = client_options(
        settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="OAUTHBEARER",
            kafka_oauth_token_url="https://idp.example/token",
            kafka_oauth_client_id="herald",
            kafka_oauth_client_secret="s3cret",
        )
    )
    assert isinstance(options["sasl_oauth_token_provider"], ClientCredentialsTokenProvider)
    assert "sasl_plain_password" not in options


@pytest.mark.parametrize(
    ("values", "named"),
    [
        pytest.param(
            {"kafka_security_protocol": "SASL_SSL"}, "HERALD_KAFKA_SASL_MECHANISM", id="sasl-without-mechanism"
        ),
        pytest.param(
            {"kafka_sasl_mechanism": "PLAIN", "kafka_sasl_username": "u", "kafka_sasl_password": "p"},
            "HERALD_KAFKA_SECURITY_PROTOCOL",
            id="mechanism-without-sasl",
        ),
        pytest.param(
            {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": "SCRAM-SHA-256",
                "kafka_sasl_username": "u",
            },
            "HERALD_KAFKA_SASL_PASSWORD",
            id="scram-without-password",
        ),
        pytest.param(
            {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": "OAUTHBEARER",
                "kafka_oauth_token_url": "https://idp.example/token",
            },
            "HERALD_KAFKA_OAUTH_CLIENT_ID",
            id="oauth-without-client",
        ),
        pytest.param({"kafka_security_protocol": "SSL", "kafka_ssl_cert_file": __file__}, "KEY_FILE", id="cert-alone"),
        pytest.param({"kafka_security_protocol": "TLS"}, "kafka_security_protocol", id="unknown-protocol"),
        pytest.param({"kafka_ssl_ca_file": "/nowhere/ca.pem"}, "kafka_ssl_ca_file", id="missing-ca-file"),
    ],
)
def test_a_combination_no_cluster_accepts_is_refused_naming_the_setting(values: dict[str, object], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        settings(**values)
