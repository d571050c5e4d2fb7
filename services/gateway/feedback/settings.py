"""The provider callbacks' settings (``HERALD_*``), part of the gateway's."""

import re

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import Field, SecretStr, field_validator
from sendgrid.helpers.eventwebhook import EventWebhook

from shared.config import CommaSeparated, HeraldSettings

# Where AWS serves SNS signing certificates and subscription confirmations: sns.<region>.amazonaws.com(.cn).
SNS_HOSTS = r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"


class CallbackSettings(HeraldSettings):
    # The gateway's public URL as providers call it (behind a proxy, not the address it listens on):
    # Twilio signs the URL it called. Unset: the URL the request arrived at.
    public_base_url: str | None = None
    # Signs Twilio's status callbacks (sender-sms's account token); unset: the Twilio callback answers 404.
    twilio_auth_token: SecretStr | None = None
    # SendGrid's Event Webhook verification key (base64, as SendGrid shows it); unset: that callback answers 404.
    sendgrid_webhook_public_key: str | None = None
    # The SNS topics SES publishes bounces, complaints and deliveries to. A message from any other topic is
    # refused: anyone can have SNS sign a message of their own topic. Empty: the SES callback answers 404.
    ses_sns_topic_arns: CommaSeparated = Field(default_factory=list)
    # Tests only: the hosts (a regex matching the whole host name) SNS certificates and confirmation URLs
    # may be fetched from, a CA bundle to trust when fetching them, and whether those hosts may resolve
    # to loopback or private addresses (a local HTTPS server; shared.ssrf).
    sns_cert_host_pattern: str = SNS_HOSTS
    sns_ca_file: str | None = None
    sns_allow_private_networks: bool = False

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
