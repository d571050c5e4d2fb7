"""How every Kafka client of Herald reaches the cluster: bootstrap servers, TLS and SASL, set once.

Producers, consumers, the topics job and :class:`shared.client.NotificationClient` all take their
connection from :func:`client_options`, so a managed or secured cluster (MSK, Confluent Cloud, Aiven,
Strimzi with TLS) is configured by ``HERALD_KAFKA_*`` variables alone: TLS with a CA bundle and
hostname checking, a client certificate (mutual TLS), and SASL ``PLAIN``, ``SCRAM-SHA-256``,
``SCRAM-SHA-512`` or ``OAUTHBEARER`` (OIDC client credentials, :class:`ClientCredentialsTokenProvider`).
Secrets come from the environment (or a Kubernetes Secret mounted into it), never from files in the image.
"""

from __future__ import annotations

import ssl
import time
from typing import Any, Literal, Self

import httpx
from aiokafka.abc import AbstractTokenProvider
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed, UnsupportedSaslMechanismError
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.metadata import MetadataRequest
from pydantic import Field, FilePath, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
# A token is fetched again this long before it expires, so no connection starts with one about to lapse.
TOKEN_REFRESH_MARGIN_S = 60.0


class KafkaConnectionSettings(BaseSettings):
    """Where the Kafka cluster is and how to authenticate to it (``HERALD_KAFKA_*``)."""

    model_config = SettingsConfigDict(env_prefix="HERALD_", env_file=".env", extra="ignore")

    kafka_bootstrap_servers: str = Field(default="127.0.0.1:9092", description="Kafka bootstrap servers.")
    kafka_security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT",
        description="PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (SASL over TLS: what managed clusters use).",
    )
    kafka_ssl_ca_file: FilePath | None = Field(
        default=None, description="CA bundle (PEM) the brokers' certificates are checked against; unset: the system's."
    )
    kafka_ssl_check_hostname: bool = Field(
        default=True, description="Check that a broker's certificate names the host connected to (SSL, SASL_SSL)."
    )
    kafka_ssl_cert_file: FilePath | None = Field(
        default=None, description="Client certificate (PEM) for mutual TLS; with HERALD_KAFKA_SSL_KEY_FILE."
    )
    kafka_ssl_key_file: FilePath | None = Field(
        default=None, description="The client certificate's private key (PEM), for mutual TLS."
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None, description="Password of HERALD_KAFKA_SSL_KEY_FILE, if it is encrypted."
    )
    kafka_sasl_mechanism: SaslMechanism | None = Field(
        default=None,
        description="PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER; required with SASL_PLAINTEXT and SASL_SSL.",
    )
    kafka_sasl_username: str | None = Field(default=None, description="SASL user (PLAIN and SCRAM).")
    kafka_sasl_password: SecretStr | None = Field(default=None, description="SASL password (PLAIN and SCRAM).")
    kafka_oauth_token_url: str | None = Field(
        default=None, description="OAUTHBEARER: the OIDC token endpoint a client-credentials token is fetched from."
    )
    kafka_oauth_client_id: str | None = Field(default=None, description="OAUTHBEARER: the OIDC client id.")
    kafka_oauth_client_secret: SecretStr | None = Field(
        default=None, description="OAUTHBEARER: the OIDC client secret."
    )
    kafka_oauth_scope: str | None = Field(default=None, description="OAUTHBEARER: the scope asked for, if any.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """Refuse, at start-up and naming the variables, a combination no cluster could accept."""
        sasl = self.kafka_security_protocol.startswith("SASL_")
        if sasl and self.kafka_sasl_mechanism is None:
            raise ValueError(f"HERALD_KAFKA_SASL_MECHANISM is required with {self.kafka_security_protocol}")
        if not sasl and self.kafka_sasl_mechanism is not None:
            raise ValueError(
                f"HERALD_KAFKA_SASL_MECHANISM is set but HERALD_KAFKA_SECURITY_PROTOCOL is "
                f"{self.kafka_security_protocol}: use SASL_SSL (or SASL_PLAINTEXT)"
            )
        if self.kafka_sasl_mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                "HERALD_KAFKA_SASL_USERNAME and HERALD_KAFKA_SASL_PASSWORD are required with "
                f"{self.kafka_sasl_mechanism}"
            )
        if self.kafka_sasl_mechanism == "OAUTHBEARER" and not (
            self.kafka_oauth_token_url and self.kafka_oauth_client_id and self.kafka_oauth_client_secret
        ):
            raise ValueError(
                "HERALD_KAFKA_OAUTH_TOKEN_URL, HERALD_KAFKA_OAUTH_CLIENT_ID and HERALD_KAFKA_OAUTH_CLIENT_SECRET are "
                "required with OAUTHBEARER"
            )
        if (self.kafka_ssl_cert_file is None) != (self.kafka_ssl_key_file is None):
            raise ValueError("set both HERALD_KAFKA_SSL_CERT_FILE and HERALD_KAFKA_SSL_KEY_FILE, or neither")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.kafka_security_protocol in ("SSL", "SASL_SSL")


def client_options(settings: KafkaConnectionSettings) -> dict[str, Any]:
    """The keyword arguments every aiokafka client (producer, consumer, admin) is built with."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.uses_tls:
        options["ssl_context"] = tls_context(settings)
    mechanism = settings.kafka_sasl_mechanism
    if mechanism is not None:
        options["sasl_mechanism"] = mechanism
    if mechanism == "OAUTHBEARER":
        options["sasl_oauth_token_provider"] = ClientCredentialsTokenProvider.of(settings)
    elif mechanism is not None:
        assert settings.kafka_sasl_password is not None
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


def tls_context(settings: KafkaConnectionSettings) -> ssl.SSLContext:
    """A client TLS context: the CA bundle (or the system's), hostnames checked unless switched off, and the
    client certificate for mutual TLS if one is set."""
    password = settings.kafka_ssl_key_password.get_secret_value() if settings.kafka_ssl_key_password else None
    context: ssl.SSLContext = create_ssl_context(
        cafile=str(settings.kafka_ssl_ca_file) if settings.kafka_ssl_ca_file else None,
        certfile=str(settings.kafka_ssl_cert_file) if settings.kafka_ssl_cert_file else None,
        keyfile=str(settings.kafka_ssl_key_file) if settings.kafka_ssl_key_file else None,
        password=password,
    )
    context.check_hostname = settings.kafka_ssl_check_hostname
    return context


async def connection_problem(settings: KafkaConnectionSettings, timeout_s: float = 10.0) -> str | None:
    """Why a client with ``settings`` cannot use the first bootstrap server, in one line naming the settings to
    check; None when it can (it connects, logs in and is answered a metadata request).

    aiokafka's own bootstrap error says only that it could not bootstrap: this asks again, one step at a
    time, to tell a refused login from an untrusted certificate from a broker that wants another protocol.
    """
    host, _, port = settings.kafka_bootstrap_servers.split(",")[0].strip().rpartition(":")
    options = client_options(settings)
    where = f"{host}:{port} (HERALD_KAFKA_BOOTSTRAP_SERVERS)"
    protocol = settings.kafka_security_protocol
    try:
        connection = await create_conn(
            host,
            int(port),
            ssl_context=options.get("ssl_context"),
            security_protocol=protocol,
            sasl_mechanism=options.get("sasl_mechanism", "PLAIN"),
            sasl_plain_username=options.get("sasl_plain_username"),
            sasl_plain_password=options.get("sasl_plain_password"),
            sasl_oauth_token_provider=options.get("sasl_oauth_token_provider"),
            request_timeout_ms=int(timeout_s * 1000),
        )
        try:
            await connection.send(MetadataRequest([]))
        finally:
            connection.close()
    except SaslAuthenticationFailed as error:
        if settings.kafka_sasl_mechanism == "OAUTHBEARER":
            return (
                f"{where} refused the OAUTHBEARER token of client {settings.kafka_oauth_client_id!r} ({error}): check "
                "HERALD_KAFKA_OAUTH_TOKEN_URL, HERALD_KAFKA_OAUTH_CLIENT_ID and HERALD_KAFKA_OAUTH_SCOPE against the "
                "identity provider the cluster trusts"
            )
        return (
            f"{where} refused the {settings.kafka_sasl_mechanism} login of {settings.kafka_sasl_username!r} "
            f"({error}): check HERALD_KAFKA_SASL_USERNAME and HERALD_KAFKA_SASL_PASSWORD"
        )
    except KeyError:
        # aiokafka 0.14 fails so on a SCRAM server-final message that carries an error (e=...) instead of v=.
        return (
            f"{where} refused the {settings.kafka_sasl_mechanism} login of {settings.kafka_sasl_username!r}: "
            "check HERALD_KAFKA_SASL_USERNAME and HERALD_KAFKA_SASL_PASSWORD"
        )
    except UnsupportedSaslMechanismError as error:
        return f"{where} does not offer {settings.kafka_sasl_mechanism} ({error}): check HERALD_KAFKA_SASL_MECHANISM"
    except TokenError as error:
        return str(error)
    except ssl.SSLCertVerificationError as error:
        return (
            f"{where} presented a certificate this client does not accept ({error.verify_message}): set "
            "HERALD_KAFKA_SSL_CA_FILE to the CA that signed it (or check HERALD_KAFKA_SSL_CHECK_HOSTNAME)"
        )
    except ssl.SSLError as error:
        return f"TLS with {where} failed ({error.reason}): check HERALD_KAFKA_SECURITY_PROTOCOL ({protocol})"
    except KafkaConnectionError:
        wants = {
            "PLAINTEXT": "TLS or a SASL login: check HERALD_KAFKA_SECURITY_PROTOCOL (PLAINTEXT)",
            "SSL": "a client certificate (HERALD_KAFKA_SSL_CERT_FILE, HERALD_KAFKA_SSL_KEY_FILE) or a SASL login "
            "(HERALD_KAFKA_SECURITY_PROTOCOL=SASL_SSL)",
            "SASL_PLAINTEXT": "TLS: check HERALD_KAFKA_SECURITY_PROTOCOL (SASL_PLAINTEXT)",
            "SASL_SSL": "a client certificate (HERALD_KAFKA_SSL_CERT_FILE, HERALD_KAFKA_SSL_KEY_FILE)",
        }[protocol]
        return f"{where} closed the connection: it may want {wants}"
    except (TimeoutError, OSError) as error:
        return f"nothing answers Kafka at {where}: {error}"
    return None


class TokenError(Exception):
    """The token endpoint gave no token: wrong client credentials, or the endpoint is unreachable."""


class ClientCredentialsTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """OAUTHBEARER tokens from an OIDC token endpoint (the client-credentials grant), cached until shortly
    before they expire. AWS MSK IAM is the same interface with a signed token instead (see the docs)."""

    def __init__(self, token_url: str, client_id: str, client_secret: str, *, scope: str | None = None) -> None:
        self._token_url = token_url
        self._credentials = (client_id, client_secret)
        self._scope = scope
        self._token = ""
        self._refresh_at = 0.0

    @classmethod
    def of(cls, settings: KafkaConnectionSettings) -> ClientCredentialsTokenProvider:
        """The provider ``HERALD_KAFKA_OAUTH_*`` describe (checked complete by the settings)."""
        secret = settings.kafka_oauth_client_secret
        return cls(
            settings.kafka_oauth_token_url or "",
            settings.kafka_oauth_client_id or "",
            secret.get_secret_value() if secret else "",
            scope=settings.kafka_oauth_scope,
        )

    async def token(self) -> str:
        """A valid access token, fetched again once the cached one is near its expiry."""
        if not self._token or time.monotonic() >= self._refresh_at:
            self._token, lifetime_s = await self._fetch()
            self._refresh_at = time.monotonic() + max(lifetime_s - TOKEN_REFRESH_MARGIN_S, lifetime_s / 2)
        return self._token

    async def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"} | ({"scope": self._scope} if self._scope else {})
        try:
            async with httpx.AsyncClient(timeout=10.0) as client:
                response = await client.post(self._token_url, data=form, auth=self._credentials)
        except httpx.HTTPError as error:
            raise TokenError(f"HERALD_KAFKA_OAUTH_TOKEN_URL ({self._token_url}) did not answer: {error}") from error
        if response.status_code != 200:
            raise TokenError(
                f"HERALD_KAFKA_OAUTH_TOKEN_URL answered {response.status_code}: check HERALD_KAFKA_OAUTH_CLIENT_ID "
                "and HERALD_KAFKA_OAUTH_CLIENT_SECRET"
            )
        body = response.json()
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise TokenError("HERALD_KAFKA_OAUTH_TOKEN_URL answered without an access_token")
        return body["access_token"], float(body.get("expires_in", 300))
