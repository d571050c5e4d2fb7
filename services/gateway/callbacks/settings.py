"""The provider callbacks' settings (``HERALD_*``), part of the gateway's."""

import re

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import Field, SecretStr, field_validator
from sendgrid.helpers.eventwebhook import EventWebhook

from shared.config import CommaSeparated, HeraldSettings

# Where AWS serves SNS signing certificates and subscription confirmations: sns.<region>.amazonaws.com(.cn).
SNS_HOSTS = r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"


class CallbackSettings(HeraldSettings):
    public_base_url: str | None = Field(
        default=None,
        description=(
            "The gateway's public URL as providers call it (behind a proxy, not the address it listens on): Twilio "
            "signs the URL it called. Unset: the URL the request arrived at."
        ),
    )
    twilio_auth_token: SecretStr | None = Field(
        default=None,
        description=(
            "Verifies Twilio's status callbacks (sender-sms's account token); unset: the Twilio callback answers 404."
        ),
    )
    sendgrid_webhook_public_key: str | None = Field(
        default=None,
        description=(
            "SendGrid's Event Webhook verification key (base64, as SendGrid shows it); unset: that callback answers "
            "404."
        ),
    )
    ses_sns_topic_arns: CommaSeparated = Field(
        default_factory=list,
        description=(
            "The SNS topics SES publishes bounces, complaints and deliveries to, comma-separated. A message from any "
            "other topic is refused: anyone can have SNS sign a message of their own topic. Empty: the SES callback "
            "answers 404."
        ),
    )
    sns_cert_host_pattern: str = Field(
        default=SNS_HOSTS,
        description=(
            "Tests only: the hosts (a regex matching the whole host name) SNS certificates and subscription "
            "confirmation URLs may be fetched from."
        ),
    )
    sns_ca_file: str | None = Field(
        default=None, description="Tests only: a CA bundle to trust when fetching SNS certificates and confirmations."
    )
    sns_allow_private_networks: bool = Field(
        default=False,
        description=(
            "Tests only: whether the SNS certificate and confirmation hosts may resolve to loopback or private "
            "addresses (a local HTTPS server; shared.ssrf)."
        ),
    )

    @field_validator("sendgrid_webhook_public_key")
    @classmethod
    def _sendgrid_key_loads(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                key = EventWebhook(value).public_key
            except ValueError as error:
                raise ValueError(f"not a base64 ECDSA public key: {error}") from None
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise ValueError("not an ECDSA public key")
        return value

    @field_validator("sns_cert_host_pattern")
    @classmethod
    def _host_pattern_compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"not a regular expression: {error}") from None
        return value
