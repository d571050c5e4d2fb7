"""A local Firebase Cloud Messaging HTTP v1 API and Google OAuth2 token endpoint, for tests.

The official SDK (firebase-admin) runs its real auth flow against it: the service account JSON
written by :meth:`FcmStandIn.write_service_account` names the stand-in as its ``token_uri``, so
google-auth posts a signed JWT assertion there, and the stand-in verifies the signature with the
key it generated before it hands out an access token. ``POST /v1/projects/{project}/messages:send``
then requires that token, validates the message as FCM does (the fields and types of the v1
``Message`` resource) and records what it accepts. ``fail_next`` scripts FCM's error answers.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from infra.local.processes import StartsAndStops
from infra.standins.asgi import ThreadedServer

HOST = "127.0.0.1"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MESSAGING_SCOPES = frozenset(
    {"https://www.googleapis.com/auth/firebase.messaging", "https://www.googleapis.com/auth/cloud-platform"}
)
TOKEN_LIFETIME_S = 3600
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
# google.rpc status names by HTTP status, as Google APIs pair them.
RPC_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_MESSAGE_FIELDS = {"name", "data", "notification", "android", "webpush", "apns", "fcm_options"}
_TARGETS = ("token", "fid", "topic", "condition")
_ANDROID_FIELDS = {
    "collapse_key",
    "priority",
    "ttl",
    "restricted_package_name",
    "data",
    "notification",
    "fcm_options",
    "direct_boot_ok",
    "bandwidth_constrained_ok",
    "restricted_satellite_ok",
}
_APNS_FIELDS = {"headers", "payload", "fcm_options", "live_activity_token"}
_WEBPUSH_FIELDS = {"headers", "data", "notification", "fcm_options"}
_DURATION = re.compile(r"^\d+(\.\d{1,9})?s$")
# Registration tokens are opaque, but only ever made of these characters.
_TOKEN = re.compile(r"^[A-Za-z0-9_:\-]+$")
_RESERVED_DATA_KEYS = {"from", "notification", "message_type"}


@dataclass(frozen=True)
class AcceptedMessage:
    """One message the stand-in accepted: the project, the name it answered and the v1 ``message`` object."""

    project: str
    name: str
    message: dict[str, Any]
    validate_only: bool


@dataclass(frozen=True)
class _Failure:
    status: int
    error_code: str
    message: str
    field: str | None
    retry_after_s: int | None


@dataclass(frozen=True)
class _Account:
    project_id: str
    key_id: str
    public_key: rsa.RSAPublicKey


class _Invalid(ValueError):
    """A message that breaks the v1 API's rules; ``field`` is the path FCM names in its answer."""

    def __init__(self, field: str, description: str) -> None:
        super().__init__(description)
        self.field = field
        self.description = description


class FcmStandIn(StartsAndStops):
    """FCM's send endpoint and an OAuth2 token endpoint on one local port, served from a thread."""

    def __init__(self, host: str = HOST) -> None:
        self.host = host
        self.port = 0
        self._lock = threading.Lock()
        self._messages: list[AcceptedMessage] = []
        self._failures: list[_Failure] = []
        self._accounts: dict[str, _Account] = {}  # by client_email
        self._access_tokens: dict[str, tuple[str, float]] = {}  # token -> (project_id, expiry)
        self._ids = itertools.count(1)
        self._server: ThreadedServer | None = None
        # Called with each accepted message (the local stack prints them).
        self.on_accept: Callable[[AcceptedMessage], None] | None = None

    @property
    def url(self) -> str:
        """The base URL; FCM's is ``https://fcm.googleapis.com``."""
        return f"http://{self.host}:{self.port}"

    @property
    def token_uri(self) -> str:
        """The OAuth2 token endpoint service accounts written by this stand-in use."""
        return f"{self.url}/token"

    @property
    def messages(self) -> list[AcceptedMessage]:
        """A snapshot of the accepted messages, oldest first."""
        with self._lock:
            return list(self._messages)

    def fail_next(
        self,
        status: int,
        error_code: str,
        *,
        message: str | None = None,
        field: str | None = None,
        retry_after_s: int | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` authenticated sends with FCM's error body for ``error_code``.

        ``field`` adds a ``google.rpc.BadRequest`` field violation (e.g. ``message.token``), as FCM
        does for an INVALID_ARGUMENT; ``retry_after_s`` adds a ``Retry-After`` header.
        """
        failure = _Failure(status, error_code, message or f"scripted {error_code}", field, retry_after_s)
        with self._lock:
            self._failures.extend([failure] * times)

    def reset(self) -> None:
        """Forget accepted messages and scripted failures (accounts and tokens stay valid)."""
        with self._lock:
            self._messages.clear()
            self._failures.clear()

    def write_service_account(
        self, path: Path, project_id: str = "herald-test", *, trusted: bool = True
    ) -> dict[str, Any]:
        """Write a service account JSON whose ``token_uri`` is this stand-in; return its contents.

        A fresh RSA key signs the account's JWT assertions; with ``trusted=False`` the stand-in
        does not know the key, so the token endpoint refuses it as Google refuses a deleted key.
        """
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_id = secrets.token_hex(20)
        email = f"firebase-adminsdk-{secrets.token_hex(3)}@{project_id}.iam.gserviceaccount.com"
        info = {
            "type": "service_account",
            "project_id": project_id,
            "private_key_id": key_id,
            "private_key": key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode(),
            "client_email": email,
            "client_id": str(secrets.randbits(63)),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
        }
        if trusted:
            with self._lock:
                self._accounts[email] = _Account(project_id, key_id, key.public_key())
        path.write_text(json.dumps(info), encoding="utf-8")
        return info

    def start(self, timeout: float = 10.0) -> None:
        """Serve on a background thread; return once it accepts connections."""
        self._server = ThreadedServer(self._app(), self.host, self.port, "FCM stand-in")
        self._server.start(timeout)
        self.port = self._server.port

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for the thread to end."""
        if self._server is not None:
            self._server.stop(timeout)
        self._server = None

    # --- the HTTP API ---------------------------------------------------------------------------

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/token", self._token, methods=["POST"]),
                Route("/v1/projects/{project}/messages:send", self._send, methods=["POST"]),
            ]
        )

    async def _token(self, request: Request) -> JSONResponse:
        # Parsed here: Starlette's form parser needs python-multipart, a dependency for two fields.
        form = urllib.parse.parse_qs((await request.body()).decode("utf-8", "replace"))
        if form.get("grant_type") != [JWT_BEARER_GRANT]:
            return _oauth_error("unsupported_grant_type", "Invalid grant_type")
        try:
            project_id = self._verify_assertion(form.get("assertion", [""])[0])
        except ValueError as error:
            return _oauth_error("invalid_grant", str(error))
        access_token = "ya29.standin-" + secrets.token_urlsafe(24)
        with self._lock:
            self._access_tokens[access_token] = (project_id, time.time() + TOKEN_LIFETIME_S)
        return JSONResponse({"access_token": access_token, "expires_in": TOKEN_LIFETIME_S, "token_type": "Bearer"})

    def _verify_assertion(self, assertion: str) -> str:
        """Check a service account's JWT as Google does; return the account's project."""
        try:
            header_part, claims_part, signature_part = assertion.split(".")
            header = json.loads(_b64url(header_part))
            claims = json.loads(_b64url(claims_part))
            signature = _b64url(signature_part)
        except (ValueError, binascii.Error) as error:
            raise ValueError("Invalid JWT: malformed assertion") from error
        with self._lock:
            account = self._accounts.get(str(claims.get("iss")))
        if header.get("alg") != "RS256" or account is None or header.get("kid") != account.key_id:
            raise ValueError("Invalid JWT Signature.")
        try:
            signed = f"{header_part}.{claims_part}".encode()
            account.public_key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature as error:
            raise ValueError("Invalid JWT Signature.") from error
        now = time.time()
        # google-auth sets Google's own token endpoint as the audience whatever the token_uri is.
        if claims.get("aud") not in (GOOGLE_TOKEN_AUDIENCE, self.token_uri):
            raise ValueError("Invalid JWT: audience is not the token endpoint")
        if not float(claims.get("iat", now + 1e9)) - 300 <= now < float(claims.get("exp", 0)):
            raise ValueError("Invalid JWT: Token must be a short-lived token and in a reasonable timeframe.")
        if not MESSAGING_SCOPES & set(str(claims.get("scope", "")).split()):
            raise ValueError("Invalid JWT: no scope that allows Cloud Messaging")
        return account.project_id

    async def _send(self, request: Request) -> JSONResponse:
        project = request.path_params["project"]
        scheme, _, access_token = request.headers.get("authorization", "").partition(" ")
        with self._lock:
            granted = self._access_tokens.get(access_token) if scheme.lower() == "bearer" else None
        if granted is None or granted[1] <= time.time():
            return _error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
                "other valid authentication credential.",
            )
        if granted[0] != project:
            return _error(403, f"Permission 'cloudmessaging.messages.create' denied on resource 'projects/{project}'")
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            headers = {} if failure.retry_after_s is None else {"Retry-After": str(failure.retry_after_s)}
            return _error(failure.status, failure.message, failure.error_code, failure.field, headers)
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise _Invalid("", "Invalid JSON payload received. Expected an object.")
            message = _validate_message(body)
        except json.JSONDecodeError:
            return _error(400, "Invalid JSON payload received.", "INVALID_ARGUMENT")
        except _Invalid as invalid:
            return _error(400, invalid.description, "INVALID_ARGUMENT", invalid.field or None)
        name = f"projects/{project}/messages/{next(self._ids)}"
        accepted = AcceptedMessage(project, name, message, body.get("validate_only") is True)
        with self._lock:
            self._messages.append(accepted)
        if self.on_accept is not None:
            self.on_accept(accepted)
        return JSONResponse({"name": name})


# --- validation of the v1 Message resource ----------------------------------------------------------


def _validate_message(body: dict[str, Any]) -> dict[str, Any]:
    _only(body, {"message", "validate_only"}, "")
    message = body.get("message")
    if not isinstance(message, dict):
        raise _Invalid("message", "Request contains an invalid argument: message is required.")
    _only(message, _MESSAGE_FIELDS | set(_TARGETS), "message")
    targets = [target for target in _TARGETS if target in message]
    if len(targets) != 1:
        raise _Invalid("message", "Exactly one of token, fid, topic or condition is required.")
    if "token" in message and not (isinstance(message["token"], str) and _TOKEN.match(message["token"])):
        raise _Invalid("message.token", "The registration token is not a valid FCM registration token")
    _string_map(message, "data", "message", reserved=True)
    if "notification" in message:
        _object_of_strings(message["notification"], {"title", "body", "image"}, "message.notification")
    if "android" in message:
        _validate_android(message["android"])
    if "apns" in message:
        _validate_apns(message["apns"])
    if "webpush" in message:
        _validate_webpush(message["webpush"])
    return message


def _validate_android(android: Any) -> None:
    path = "message.android"
    _object(android, path)
    _only(android, _ANDROID_FIELDS, path)
    _strings(android, {"collapse_key", "restricted_package_name"}, path)
    # FCM reads enum values case-insensitively: the official SDKs send "high" and "normal".
    if str(android.get("priority", "NORMAL")).upper() not in ("NORMAL", "HIGH"):
        raise _Invalid(f"{path}.priority", "Invalid value: priority must be NORMAL or HIGH.")
    if "ttl" in android and not (isinstance(android["ttl"], str) and _DURATION.match(android["ttl"])):
        raise _Invalid(f"{path}.ttl", "Invalid value: ttl must be a duration such as '3.5s'.")
    _string_map(android, "data", path, reserved=True)
    if "notification" in android:
        _object(android["notification"], f"{path}.notification")


def _validate_apns(apns: Any) -> None:
    path = "message.apns"
    _object(apns, path)
    _only(apns, _APNS_FIELDS, path)
    headers = _string_map(apns, "headers", path)
    if headers.get("apns-priority", "10") not in ("5", "10", "1"):
        raise _Invalid(f"{path}.headers", "apns-priority must be 1, 5 or 10.")
    if not headers.get("apns-expiration", "0").isdigit():
        raise _Invalid(f"{path}.headers", "apns-expiration must be a UNIX epoch date in seconds.")
    if len(headers.get("apns-collapse-id", "").encode()) > 64:
        raise _Invalid(f"{path}.headers", "apns-collapse-id must not exceed 64 bytes.")
    if "payload" in apns:
        _object(apns["payload"], f"{path}.payload")
        if "aps" in apns["payload"]:
            _object(apns["payload"]["aps"], f"{path}.payload.aps")


def _validate_webpush(webpush: Any) -> None:
    path = "message.webpush"
    _object(webpush, path)
    _only(webpush, _WEBPUSH_FIELDS, path)
    headers = _string_map(webpush, "headers", path)
    if not headers.get("TTL", "0").isdigit():
        raise _Invalid(f"{path}.headers", "TTL must be a number of seconds.")
    if headers.get("Urgency", "normal") not in ("very-low", "low", "normal", "high"):
        raise _Invalid(f"{path}.headers", "Urgency must be very-low, low, normal or high.")
    _string_map(webpush, "data", path)
    if "notification" in webpush:
        _object(webpush["notification"], f"{path}.notification")
    link = webpush.get("fcm_options", {}).get("link") if isinstance(webpush.get("fcm_options"), dict) else None
    if link is not None and not str(link).startswith("https://"):
        raise _Invalid(f"{path}.fcm_options.link", "The link must use HTTPS.")


def _object(value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise _Invalid(path, f"Invalid value at '{path}': expected an object.")


def _only(value: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for key in value:
        if key not in allowed:
            raise _Invalid(path, f"Invalid JSON payload received. Unknown name \"{key}\" at '{path}'.")


def _strings(value: Mapping[str, Any], keys: set[str], path: str) -> None:
    for key in keys & value.keys():
        if not isinstance(value[key], str):
            raise _Invalid(f"{path}.{key}", f"Invalid value at '{path}.{key}': expected a string.")


def _object_of_strings(value: Any, keys: set[str], path: str) -> None:
    _object(value, path)
    _only(value, keys, path)
    _strings(value, keys, path)


def _string_map(parent: Mapping[str, Any], key: str, path: str, *, reserved: bool = False) -> dict[str, str]:
    """The map ``parent[key]`` (empty if absent), refused unless every value is a string."""
    value = parent.get(key, {})
    _object(value, f"{path}.{key}")
    for name, item in value.items():
        if not isinstance(item, str):
            raise _Invalid(f"{path}.{key}[{name}]", f"Invalid value at '{path}.{key}[{name}]': expected a string.")
        if reserved and (name in _RESERVED_DATA_KEYS or name.startswith(("google.", "gcm."))):
            raise _Invalid(f"{path}.{key}", f"Invalid data payload key: {name}")
    return dict(value)


# --- answers ------------------------------------------------------------------------------------------


def _error(
    status: int,
    message: str,
    error_code: str | None = None,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A Google API error body; FCM adds its ``FcmError`` detail, and a ``BadRequest`` for bad fields."""
    details: list[dict[str, Any]] = []
    if error_code is not None:
        details.append({"@type": FCM_ERROR_TYPE, "errorCode": error_code})
    if field is not None:
        details.append({"@type": BAD_REQUEST_TYPE, "fieldViolations": [{"field": field, "description": message}]})
    error: dict[str, Any] = {"code": status, "message": message, "status": RPC_STATUS.get(status, "UNKNOWN")}
    if details:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=status, headers=dict(headers or {}))


def _oauth_error(error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=400)


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
