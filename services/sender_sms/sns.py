"""Amazon SNS provider: publishes each SMS straight to a phone number with boto3."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import boto3
import botocore.config
import botocore.exceptions
from pydantic import SecretStr

from shared.delivery import Delivered, Failed, Outcome, Retry
from shared.errors import DeadLetterReason
from shared.messages import SmsDelivery
from shared.providers.base import ProviderConfigError

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sns.type_defs import MessageAttributeValueTypeDef

T = TypeVar("T")

# Error codes SNS (and AWS's shared front end) answer when the account sends too fast.
_RATE_LIMITED = frozenset({"Throttled", "Throttling", "ThrottlingException", "KMSThrottling", "RequestLimitExceeded"})


@dataclass(frozen=True)
class SnsConfig:
    """How to reach SNS; credentials left out come from boto3's usual chain (environment, IAM role...)."""

    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    # A different endpoint (a VPC endpoint, or moto in tests); None for the region's public one.
    endpoint_url: str | None = None
    # Shown as the sender where the destination country allows alphanumeric sender IDs.
    sender_id: str | None = None
    # Bound on connecting and on each wait for an answer.
    timeout_s: float = 5.0
    # Publish calls in flight at once, each holding a worker thread and an HTTP connection.
    max_concurrency: int = 8


class SnsSmsProvider:
    """Delivers :class:`SmsDelivery` records through Amazon SNS."""

    name = "sns"

    def __init__(self, config: SnsConfig) -> None:
        self._config = config
        # Checked first: boto3 would fail on some bad settings (an endpoint URL) with a less clear error.
        self.validate_config()
        self._attributes: dict[str, MessageAttributeValueTypeDef] = {
            # Notifications are transactional: SNS routes them for reliability rather than lowest cost.
            "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"},
        }
        if config.sender_id:
            self._attributes["AWS.SNS.SMS.SenderID"] = {"DataType": "String", "StringValue": config.sender_id}
        # Made once, at start-up: finding credentials (an IAM role) may block, but before any message flows.
        session = boto3.session.Session(
            aws_access_key_id=config.access_key_id,
            aws_secret_access_key=config.secret_access_key.get_secret_value() if config.secret_access_key else None,
        )
        self._client: SNSClient = session.client(
            "sns",
            region_name=config.region,
            endpoint_url=config.endpoint_url,
            config=botocore.config.Config(
                connect_timeout=config.timeout_s,
                read_timeout=config.timeout_s,
                # Retrying is the sender's job (backoff, failover to another provider), not botocore's.
                retries={"total_max_attempts": 1},
                max_pool_connections=config.max_concurrency,
            ),
        )
        # boto3 blocks: its calls run on these threads, never more at once, never on the event loop.
        self._threads = ThreadPoolExecutor(max_workers=config.max_concurrency, thread_name_prefix="sns")

    async def send(self, delivery: SmsDelivery) -> Outcome:
        """Publish one SMS; throttling, 5xx and connection problems are retryable, rejections are not."""
        try:
            response = await self._call(
                lambda: self._client.publish(
                    PhoneNumber=delivery["to"], Message=delivery["body"], MessageAttributes=self._attributes
                )
            )
        except botocore.exceptions.ClientError as error:
            return classify(error)
        except botocore.exceptions.ParamValidationError as error:
            # botocore refused the request before sending it: the message itself is malformed.
            return Failed(self.name, f"invalid request: {error}", DeadLetterReason.INVALID_PAYLOAD)
        except botocore.exceptions.BotoCoreError as error:
            # Connection refused or reset, timeouts, no credentials: all about the provider, not the message.
            return Retry(self.name, f"cannot reach SNS: {error}")
        return Delivered(self.name, response["MessageId"])

    def validate_config(self) -> None:
        """Refuse settings that cannot work, naming the variable."""
        config = self._config
        if not config.region:
            raise ProviderConfigError("HERALD_SNS_REGION: required for the sns provider")
        if bool(config.access_key_id) != bool(config.secret_access_key):
            raise ProviderConfigError("HERALD_SNS_ACCESS_KEY_ID and HERALD_SNS_SECRET_ACCESS_KEY: give both or neither")
        if config.endpoint_url is not None and not config.endpoint_url.startswith(("http://", "https://")):
            raise ProviderConfigError(f"HERALD_SNS_ENDPOINT_URL: not an http(s) URL: {config.endpoint_url!r}")
        # AWS's rule for sender IDs: 1-11 letters and digits, at least one letter.
        sender_id = config.sender_id
        if sender_id is not None and not (
            0 < len(sender_id) <= 11 and sender_id.isascii() and sender_id.isalnum() and not sender_id.isdigit()
        ):
            raise ProviderConfigError(
                f"HERALD_SNS_SENDER_ID: 1 to 11 letters and digits with at least one letter: {sender_id!r}"
            )
        if config.timeout_s <= 0:
            raise ProviderConfigError("HERALD_PROVIDER_TIMEOUT_S: must be positive")
        if config.max_concurrency < 1:
            raise ProviderConfigError("HERALD_SNS_MAX_CONCURRENCY: at least 1")

    async def health(self) -> None:
        """Readiness: SNS answers a signed read of the account's SMS settings."""
        await self._call(self._client.get_sms_attributes)

    def close(self) -> None:
        # Calls still running finish within botocore's timeouts; queued ones are dropped.
        self._threads.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    async def _call(self, call: Callable[[], T]) -> T:
        # A cancelled caller (the chain's timeout) cancels the call if it has not started yet.
        return await asyncio.get_running_loop().run_in_executor(self._threads, call)


def classify(error: botocore.exceptions.ClientError) -> Outcome:
    """What an error answer from SNS means for the delivery."""
    details = error.response.get("Error", {})
    code = details.get("Code", "")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    detail = f"{code or status}: {details.get('Message', '')}"
    if code in _RATE_LIMITED or status == 429:
        return Retry(SnsSmsProvider.name, detail, reason="rate_limited")
    if status >= 500 or status in (401, 403):
        # 401/403 (bad credentials, a missing sns:Publish permission) are the account's problem,
        # not the message's: fail over and let the breaker open instead of dead-lettering every SMS.
        return Retry(SnsSmsProvider.name, detail)
    # InvalidParameter (not a phone number), OptedOut, a message too long...: it will never pass.
    if code == "InvalidParameter" and "phone" in detail.lower():
        return Failed(SnsSmsProvider.name, detail, DeadLetterReason.INVALID_ADDRESS)
    if code == "OptedOut":
        return Failed(SnsSmsProvider.name, detail, DeadLetterReason.RECIPIENT_OPTED_OUT)
    return Failed(SnsSmsProvider.name, detail, DeadLetterReason.PROVIDER_REJECTED)
