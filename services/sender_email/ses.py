"""Amazon SES provider: sends the MIME message built by :mod:`mime` through the SES v2 API (boto3).

boto3 is synchronous, so each call runs in a worker thread (``asyncio.to_thread``), at most
``max_concurrency`` at once; one client per API is built at start-up and shared (they are
thread-safe). botocore's own retries are off: Herald retries with backoff and fails over to the
next provider itself, and a hidden retry would blur its timings and circuit breakers.
"""

from __future__ import annotations

import asyncio
import email.errors
import re
from dataclasses import dataclass
from email.utils import parseaddr
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import SecretStr

from services.sender_email.mime import build_message
from shared.delivery import Delivered, Failed, Outcome, Retry
from shared.errors import DeadLetterReason
from shared.messages import EmailDelivery
from shared.providers.base import ProviderConfigError

if TYPE_CHECKING:
    from mypy_boto3_ses import SESClient
    from mypy_boto3_sesv2 import SESV2Client
    from mypy_boto3_sesv2.type_defs import MessageTagTypeDef, SendEmailRequestTypeDef

NAME = "ses"
# Error codes of SES v1 and v2 that say "slow down": the message itself is fine.
_THROTTLED = frozenset({"Throttling", "ThrottlingException", "TooManyRequestsException", "LimitExceededException"})
# Outages that do not always come with a 5xx status.
_UNAVAILABLE = frozenset({"ServiceUnavailable", "ServiceUnavailableException", "InternalFailure"})
# Problems of the account, not of the message: another provider can still send it, so fail over.
_ACCOUNT = frozenset(
    {
        "AccountSuspendedException",
        "SendingPausedException",
        "MailFromDomainNotVerifiedException",
        "NotFoundException",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
    }
)
# botocore's own check of region names, so a typo is reported with its variable at start-up.
_REGION = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# SES refuses a message whose tag holds anything but ASCII letters, digits, "_" and "-", or over 256 characters.
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_TAG_MAX = 256


@dataclass(frozen=True)
class SesConfig:
    """How to reach SES (``HERALD_SES_*``); credentials left out come from boto3's usual chain (IAM role...)."""

    region: str
    sender: str
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    # Another endpoint than AWS's (a VPC endpoint, or moto in tests).
    endpoint_url: str | None = None
    # Names the configuration set whose event destinations get bounces, complaints and deliveries.
    configuration_set: str | None = None
    # Bound on connecting and on each read (seconds); keep it under HERALD_PROVIDER_TIMEOUT_S.
    timeout_s: float = 10.0
    # SES calls in flight at once (worker threads and pooled HTTP connections).
    max_concurrency: int = 8


class SesProvider:
    """Delivers :class:`EmailDelivery` records through Amazon SES.

    Raises:
        ProviderConfigError: from the constructor too, as the clients cannot be built from a broken configuration.
    """

    name = NAME

    def __init__(self, config: SesConfig) -> None:
        self._config = config
        self.validate_config()
        session = boto3.Session(
            aws_access_key_id=config.access_key_id or None,
            aws_secret_access_key=config.secret_access_key.get_secret_value() if config.secret_access_key else None,
            region_name=config.region,
        )
        client_config = Config(
            connect_timeout=config.timeout_s,
            read_timeout=config.timeout_s,
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=config.max_concurrency,
        )
        self._v2: SESV2Client = session.client("sesv2", endpoint_url=config.endpoint_url, config=client_config)
        # Only for health(): SES v2's GetAccount is not implemented by moto, v1's GetSendQuota is.
        self._v1: SESClient = session.client("ses", endpoint_url=config.endpoint_url, config=client_config)
        self._slots = asyncio.Semaphore(config.max_concurrency)

    async def send(self, delivery: EmailDelivery) -> Outcome:
        """Send one email; throttling and outages are retryable, SES's rejections are permanent."""
        try:
            message = build_message(delivery, self._config.sender)
        except (ValueError, email.errors.MessageError) as error:
            # E.g. a line break in a header: sending it could inject headers, and it never gets better.
            return Failed(self.name, f"cannot build the message: {error}", DeadLetterReason.INVALID_PAYLOAD)
        request: SendEmailRequestTypeDef = {
            "FromEmailAddress": self._config.sender,
            # The envelope names the recipient explicitly, as the SMTP provider's RCPT TO does.
            "Destination": {"ToAddresses": [delivery["to"]]},
            "Content": {"Raw": {"Data": message}},
            # SES's bounce, complaint and delivery notifications carry these back to the gateway's callback.
            "EmailTags": [
                _tag("notification_id", delivery["notification_id"]),
                _tag("delivery_id", delivery["delivery_id"]),
                _tag("tenant_id", delivery["tenant_id"]),
            ],
        }
        if self._config.configuration_set:
            request["ConfigurationSetName"] = self._config.configuration_set
        async with self._slots:
            try:
                response = await asyncio.to_thread(lambda: self._v2.send_email(**request))
            except (ClientError, BotoCoreError) as error:
                return classify(error)
        return Delivered(self.name, response["MessageId"])

    def validate_config(self) -> None:
        """Refuse settings that cannot work, naming the variable."""
        config = self._config
        if not _REGION.fullmatch(config.region):
            raise ProviderConfigError(f"HERALD_SES_REGION: not an AWS region: {config.region!r}")
        if "@" not in parseaddr(config.sender)[1] or any(c in config.sender for c in "\r\n"):
            raise ProviderConfigError(f"HERALD_SES_FROM: not an address: {config.sender!r}")
        if bool(config.access_key_id) != bool(config.secret_access_key):
            raise ProviderConfigError("HERALD_SES_ACCESS_KEY_ID and HERALD_SES_SECRET_ACCESS_KEY: give both or neither")
        if config.endpoint_url is not None:
            endpoint = urlsplit(config.endpoint_url)
            if endpoint.scheme not in ("http", "https") or not endpoint.hostname:
                raise ProviderConfigError(f"HERALD_SES_ENDPOINT_URL: not an http(s) URL: {config.endpoint_url!r}")
        if config.timeout_s <= 0:
            raise ProviderConfigError(f"HERALD_SES_TIMEOUT_S: must be positive, not {config.timeout_s}")
        if config.max_concurrency < 1:
            raise ProviderConfigError(f"HERALD_SES_MAX_CONCURRENCY: must be at least 1, not {config.max_concurrency}")

    async def health(self) -> None:
        """Readiness: SES answers an authenticated GetSendQuota."""
        await asyncio.to_thread(self._v1.get_send_quota)

    def close(self) -> None:
        """Close the clients' pooled HTTP connections."""
        self._v2.close()
        self._v1.close()


def classify(error: ClientError | BotoCoreError) -> Retry | Failed:
    """The outcome of a failed SES call: wait out throttling and outages, give up on what SES refused."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        detail = f"{code}: {error.response.get('Error', {}).get('Message', '')}"
        if code in _THROTTLED or status == 429:
            return Retry(NAME, detail, reason="rate_limited")
        if code in _UNAVAILABLE or status >= 500:
            return Retry(NAME, detail)
        if code in _ACCOUNT or status in (401, 403):
            return Retry(NAME, detail, reason="provider_account")
        # MessageRejected (an unverified sender as much as a virus), BadRequestException...
        return Failed(NAME, detail, DeadLetterReason.PROVIDER_REJECTED)
    # No answer from SES (refused or reset connection, connect or read timeout, no credentials found):
    # nothing was said about the message.
    return Retry(NAME, f"{type(error).__name__}: {error}")


def _tag(name: str, value: str) -> MessageTagTypeDef:
    return {"Name": name, "Value": _TAG_UNSAFE.sub("_", value)[:_TAG_MAX]}
