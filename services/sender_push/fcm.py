"""FCM provider: sends Android, iOS and web pushes through the FCM HTTP v1 API with firebase-admin."""

from __future__ import annotations

import asyncio
import functools
import json
import re
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import firebase_admin
import google.auth.exceptions
import google.auth.transport.requests
import requests
from firebase_admin import credentials, exceptions, messaging

from shared.delivery import Delivered, Failed, Outcome, Retry
from shared.errors import DeadLetterReason
from shared.messages import Priority, PushDelivery
from shared.providers.base import ProviderConfigError

NAME = "fcm"
FCM_BASE_URL = "https://fcm.googleapis.com"
_FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
# Web Push's Topic header (the collapse key) allows at most 32 characters of the URL-safe base64 alphabet.
_WEBPUSH_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_APNS_PRIORITY: dict[Priority, str] = {"high": "10", "normal": "10", "low": "5"}

T = TypeVar("T")


@dataclass(frozen=True)
class FcmConfig:
    """What the FCM provider needs, independent of how it is configured."""

    # A service account key: the path of its JSON file, or the JSON itself.
    credentials: str = field(repr=False)
    # The Firebase project; defaults to the service account's.
    project_id: str | None = None
    base_url: str = FCM_BASE_URL
    # Bound on each HTTP request (seconds); the whole send is bounded by the caller.
    timeout_s: float = 10.0
    # Requests in flight at once, each on a thread of the provider's own.
    max_concurrency: int = 8


class FcmProvider:
    """Delivers :class:`PushDelivery` records through ``messages:send`` on a Firebase app of its own."""

    name = NAME

    def __init__(self, config: FcmConfig) -> None:
        self._config = config
        # Checked here, not in validate_config: the provider cannot even be built without a thread.
        if config.max_concurrency < 1:
            raise ProviderConfigError(f"HERALD_FCM_MAX_CONCURRENCY: must be at least 1: {config.max_concurrency}")
        try:
            info = config.credentials if config.credentials.lstrip().startswith("{") else None
            credential = credentials.Certificate(json.loads(info) if info else config.credentials)
        except (OSError, ValueError) as error:
            raise ProviderConfigError(f"HERALD_FCM_CREDENTIALS: not a service account key: {error}") from error
        options: dict[str, Any] = {"httpTimeout": config.timeout_s}
        if config.project_id:
            options["projectId"] = config.project_id
        # A named app, not the default one: each provider owns its credentials and connections.
        self._app = firebase_admin.initialize_app(credential, options, name=f"herald-fcm-{uuid.uuid4().hex}")
        if not self._app.project_id:
            firebase_admin.delete_app(self._app)
            raise ProviderConfigError("HERALD_FCM_PROJECT_ID: required when the service account names no project")
        self._credential = credential.get_credential()
        base_url = config.base_url.rstrip("/")
        service = messaging._get_messaging_service(self._app)
        # firebase-admin has no supported override of the FCM endpoint (its emulator variables serve
        # Auth, Database and Functions, not messaging), so stand-ins are reached by setting the URL it posts to.
        service._fcm_url = f"{base_url}/v1/projects/{self._app.project_id}/messages:send"
        # The SDK's default adapter retries 500/503 with backoff and re-sends a POST after a read error.
        # Herald's retry service owns retries, and a silent re-send could deliver a push twice.
        service._client.session.mount(
            base_url, requests.adapters.HTTPAdapter(pool_maxsize=config.max_concurrency, max_retries=0)
        )
        self._token_session = requests.Session()
        self._token_request = google.auth.transport.requests.Request(self._token_session)
        # The SDK is synchronous. Threads of its own bound the calls in flight, even those whose
        # caller timed out, and keep them off the default executor (where DNS lookups run).
        self._threads = ThreadPoolExecutor(max_workers=config.max_concurrency, thread_name_prefix="fcm")

    async def send(self, delivery: PushDelivery) -> Outcome:
        """Send one push: accepted is delivered; dead tokens and bad messages fail; the rest is retried."""
        message = _message(delivery)
        try:
            name = await self._call(functools.partial(messaging.send, message, app=self._app))
        except exceptions.FirebaseError as error:
            return _classify(error)
        except google.auth.exceptions.RefreshError as error:
            if error.retryable:
                return Retry(self.name, f"cannot get an access token: {error}")
            # The service account itself (a deleted key, a disabled account): another provider may still send.
            return Retry(self.name, f"service account refused (HERALD_FCM_CREDENTIALS): {error}", "provider_account")
        except google.auth.exceptions.TransportError as error:
            return Retry(self.name, f"cannot reach the token endpoint: {error}")
        except ValueError as error:  # the SDK's own checks of the message (e.g. a bad TTL)
            return Failed(self.name, f"not a valid FCM message: {error}", DeadLetterReason.INVALID_PAYLOAD)
        return Delivered(self.name, str(name))

    def validate_config(self) -> None:
        """Refuse settings that cannot work, naming the variable."""
        config = self._config
        url = urlsplit(config.base_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ProviderConfigError(f"HERALD_FCM_BASE_URL: not an http(s) URL: {config.base_url!r}")
        if config.timeout_s <= 0:
            raise ProviderConfigError(f"HERALD_PROVIDER_TIMEOUT_S: must be positive: {config.timeout_s}")

    async def health(self) -> None:
        """Readiness: the service account obtains an access token (no message is sent)."""
        request = functools.partial(self._token_request, timeout=self._config.timeout_s)
        await self._call(functools.partial(self._credential.refresh, request))

    async def close(self) -> None:
        """Stop the provider's threads and delete its Firebase app; a request in flight ends on its own timeout."""
        self._threads.shutdown(wait=False, cancel_futures=True)
        self._token_session.close()
        # On another thread: deleting the app closes the SDK's async client with asyncio.run(), which
        # cannot run on a thread whose event loop is running.
        await asyncio.to_thread(firebase_admin.delete_app, self._app)

    async def _call(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, call)


def _message(delivery: PushDelivery) -> messaging.Message:
    """The v1 message, with the config block of the token's platform only."""
    ttl_s, collapse_key, priority = delivery["ttl_s"], delivery["collapse_key"], delivery["priority"]
    android = apns = webpush = None
    if delivery["platform"] == "android":
        android = messaging.AndroidConfig(
            ttl=ttl_s, collapse_key=collapse_key, priority="high" if priority == "high" else "normal"
        )
    elif delivery["platform"] == "ios":
        headers = {"apns-push-type": "alert", "apns-priority": _APNS_PRIORITY[priority]}
        if collapse_key:
            headers["apns-collapse-id"] = collapse_key
        if ttl_s is not None:
            # APNs wants an absolute expiry; 0 means deliver now or never.
            headers["apns-expiration"] = str(int(time.time()) + ttl_s if ttl_s > 0 else 0)
        apns = messaging.APNSConfig(headers=headers)
    else:
        headers = {"Urgency": priority}
        if ttl_s is not None:
            headers["TTL"] = str(ttl_s)
        # A key Web Push cannot carry as its Topic would make FCM refuse the whole message: drop it instead.
        if collapse_key and _WEBPUSH_TOPIC.match(collapse_key):
            headers["Topic"] = collapse_key
        webpush = messaging.WebpushConfig(headers=headers)
    return messaging.Message(
        token=delivery["token"],
        notification=messaging.Notification(title=delivery["title"], body=delivery["body"]),
        data=delivery["data"] or None,
        android=android,
        apns=apns,
        webpush=webpush,
    )


def _classify(error: exceptions.FirebaseError) -> Outcome:
    detail = f"{error.code} {error}"
    if isinstance(error, messaging.UnregisteredError):
        return Failed(NAME, f"unregistered token: {error}", DeadLetterReason.UNREGISTERED_TOKEN)
    if isinstance(error, messaging.SenderIdMismatchError):
        return Failed(NAME, f"token of another sender: {error}", DeadLetterReason.PERMANENT_FAILURE)
    if isinstance(error, exceptions.InvalidArgumentError):
        if _about_token(error):
            return Failed(NAME, f"invalid token: {error}", DeadLetterReason.INVALID_TOKEN)
        return Failed(NAME, detail)
    if isinstance(error, exceptions.ResourceExhaustedError):
        return Retry(NAME, detail, reason="rate_limited", after_s=_retry_after_s(error))
    if isinstance(error, exceptions.UnauthenticatedError | exceptions.PermissionDeniedError):
        # The account (or its APNs/web credentials in Firebase), not the message: fail over.
        return Retry(NAME, detail, reason="provider_account")
    status = error.http_response.status_code if error.http_response is not None else None
    if status is not None and 400 <= status < 500 and status not in (408, 429):
        # Any other refusal (a 404 project, a 413 payload): sending it again will not help.
        return Failed(NAME, detail)
    # UNAVAILABLE, INTERNAL, timeouts and connection errors (the SDK raises those as FirebaseErrors too).
    return Retry(NAME, detail)


def _about_token(error: exceptions.FirebaseError) -> bool:
    """Whether FCM's INVALID_ARGUMENT names the registration token (its field violation, else its message)."""
    for detail in _error_details(error):
        if detail.get("@type") == _BAD_REQUEST_TYPE:
            violations = detail.get("fieldViolations") or []
            return any(isinstance(v, dict) and v.get("field") == "message.token" for v in violations)
    return "registration token" in str(error)


def _error_details(error: exceptions.FirebaseError) -> list[dict[str, Any]]:
    try:
        details = error.http_response.json()["error"]["details"]
    except (AttributeError, ValueError, LookupError, TypeError):  # no response, or not Google's error shape
        return []
    return [detail for detail in details if isinstance(detail, dict)] if isinstance(details, list) else []


def _retry_after_s(error: exceptions.FirebaseError) -> float | None:
    value = error.http_response.headers.get("Retry-After", "") if error.http_response is not None else ""
    return float(value) if value.strip().isdigit() else None
