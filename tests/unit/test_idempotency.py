"""Idempotency keys and dedup windows, without I/O: key syntax, body fingerprints, stored responses,
each request's dedup window, and that every mutating API route takes an ``Idempotency-Key``."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from redis.asyncio import Redis

from services.gateway.app import create_app
from services.gateway.callbacks import routes as callbacks
from services.gateway.http.credentials import Principal
from services.gateway.http.idempotency_store import (
    HEADER,
    MAX_KEY_LENGTH,
    MUTATING_METHODS,
    IdempotencyStore,
    InvalidKey,
    StoredResponse,
    fingerprint,
    parse_key,
)
from services.gateway.settings import GatewaySettings
from services.ingest.dedup import DedupPolicy
from services.ingest.settings import IngestSettings
from shared.config import ConfigurationError, load_settings
from shared.errors import InvalidRequest
from shared.requests import MAX_DEDUP_WINDOW_S, build_request, validate_request
from tests.conftest import ENCRYPTOR

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("clean_environment")]


# --- the Idempotency-Key header -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("order-A-1001", "order-A-1001"),
        ("8e03978e-40d5-43e8-bc93-6894a57f9324", "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        ('"order-A-1001"', "order-A-1001"),  # the draft's form: a Structured Field String
        ('"with space"', "with space"),
        ('"say \\"hi\\" \\\\ bye"', 'say "hi" \\ bye'),
        ("k" * MAX_KEY_LENGTH, "k" * MAX_KEY_LENGTH),
    ],
)
def test_a_key_is_a_bare_token_or_a_quoted_string(header: str, key: str) -> None:
    assert parse_key(header) == key


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("", id="empty"),
        pytest.param('""', id="empty-quoted"),
        pytest.param("k" * (MAX_KEY_LENGTH + 1), id="too-long"),
        pytest.param('"' + "k" * (MAX_KEY_LENGTH + 1) + '"', id="too-long-quoted"),
        pytest.param("two words", id="space-unquoted"),
        pytest.param("caf\u00e9", id="not-ascii"),
        pytest.param("tab\there", id="control-character"),
        pytest.param('"unterminated', id="unterminated"),
        pytest.param('"a"b"', id="stray-quote"),
        pytest.param('"bad \\n escape"', id="bad-escape"),
    ],
)
def test_a_malformed_key_is_refused(header: str) -> None:
    with pytest.raises(InvalidKey):
        parse_key(header)


def test_the_fingerprint_ignores_key_order_and_whitespace() -> None:
    compact = b'{"channels":["email"],"recipient":{"email":"a@example.com","user_id":"u"}}'
    spread = b'{ "recipient": {"user_id": "u", "email": "a@example.com"},\n  "channels": [ "email" ] }'
    assert fingerprint(compact) == fingerprint(spread)
    assert len(fingerprint(compact)) == 64


@pytest.mark.parametrize(
    "other",
    [
        b'{"channels":["sms"],"recipient":{"email":"a@example.com","user_id":"u"}}',
        b'{"channels":["email"],"recipient":{"email":"a@example.com","user_id":"v"}}',
        b'{"channels":["email"],"recipient":{"email":"a@example.com"}}',
        b"",
    ],
)
def test_the_fingerprint_tells_other_bodies_apart(other: bytes) -> None:
    body = b'{"channels":["email"],"recipient":{"email":"a@example.com","user_id":"u"}}'
    assert fingerprint(body) != fingerprint(other)


def test_a_body_that_is_not_json_is_fingerprinted_as_it_is() -> None:
    assert fingerprint(b"not json {") == fingerprint(b"not json {")
    assert fingerprint(b"not json {") != fingerprint(b"not json  {")


def test_a_stored_response_comes_back_byte_for_byte_marked_as_a_replay() -> None:
    stored = StoredResponse(
        202,
        ((b"content-length", b"5"), (b"content-type", b"application/json"), (b"location", b"/api/v1/x/\xe9")),
        b'{"a":\x00\xff}',
    )
    assert StoredResponse.decode(stored.encode()) == stored
    replayed = stored.replay()
    assert (replayed.status_code, replayed.body) == (202, stored.body)
    assert replayed.raw_headers == [*stored.headers, (b"idempotent-replayed", b"true")]


def _caller(tenant: str, subject: str = "key-1", kind: Literal["api_key", "jwt"] = "api_key") -> Principal:
    return Principal(tenant, frozenset({"admin"}), subject, kind, "limit")


def test_a_key_is_scoped_to_the_caller_method_and_path_and_names_nobody() -> None:
    store = IdempotencyStore(Redis(), ENCRYPTOR, prefix="herald:http-idempotency", ttl_s=60, lock_ttl_s=5)
    acme = _caller("acme")
    scopes = [
        (acme, "POST", "/api/v1/notifications", "welcome-ada@example.com"),
        (_caller("globex"), "POST", "/api/v1/notifications", "welcome-ada@example.com"),
        # Another credential of the same tenant: a key of its own, never the first one's answer.
        (_caller("acme", "key-2"), "POST", "/api/v1/notifications", "welcome-ada@example.com"),
        (_caller("acme", "key-1", "jwt"), "POST", "/api/v1/notifications", "welcome-ada@example.com"),
        (acme, "DELETE", "/api/v1/notifications", "welcome-ada@example.com"),
        (acme, "POST", "/api/v1/recipients/u/devices", "welcome-ada@example.com"),
        (acme, "POST", "/api/v1/notifications", "k2"),
        # No way to forge another scope by moving text between the parts.
        (_caller("acme", "key-1\x00POST"), "/api/v1/notifications", "", "welcome-ada@example.com"),
    ]
    keys = {store.key_for(*scope) for scope in scopes}
    assert len(keys) == len(scopes)
    assert all(k.startswith("herald:http-idempotency:") for k in keys)
    assert not any("ada" in k for k in keys)


def test_every_mutating_api_route_takes_an_idempotency_key() -> None:
    """A new POST/PUT/PATCH/DELETE under /api/v1 fails here until it adds ``dependencies=[IDEMPOTENT]``
    (the dependency is what documents the header). Provider callbacks are the exception: providers send
    no key (nor tenant), and their retries are harmless (status event ids derive from the event)."""
    paths = create_app(GatewaySettings()).openapi()["paths"]
    mutating = {
        (path, method.upper()): operation
        for path, operations in paths.items()
        if path.startswith("/api/v1/") and not path.startswith(f"{callbacks.PREFIX}/")
        for method, operation in operations.items()
        if method.upper() in MUTATING_METHODS
    }
    assert set(mutating) >= {
        ("/api/v1/notifications", "POST"),
        ("/api/v1/recipients/{user_id}/devices", "POST"),
        ("/api/v1/recipients/{user_id}/devices/{device_id}", "DELETE"),
    }
    without = [
        route
        for route, operation in mutating.items()
        if {"in": "header", "name": HEADER}
        not in [{k: p[k] for k in ("in", "name")} for p in operation.get("parameters", [])]
    ]
    assert without == []


# --- dedup windows --------------------------------------------------------------------------------


def request(**fields: Any) -> Any:
    return build_request(
        tenant_id="acme", channels=["sms"], recipient={"phone": "+14155550100"}, content={"text": "hi"}, **fields
    )


@pytest.mark.parametrize(
    ("fields", "window"),
    [
        ({}, 600),
        ({"metadata": {"type": "newsletter"}}, 600),
        ({"metadata": {"type": "otp"}}, 30),
        ({"metadata": {"type": "otp"}, "dedup": {"window_s": 90}}, 90),
        ({"dedup": {"window_s": 90}}, 90),
        ({"metadata": {"type": "otp"}, "dedup": {"bypass": True}}, None),
        ({"dedup": {"window_s": 90, "bypass": True}}, None),
    ],
)
def test_a_requests_window_is_its_own_else_its_types_else_the_default(
    fields: dict[str, Any], window: int | None
) -> None:
    assert DedupPolicy(600, {"otp": 30}).window_s(request(**fields)) == window


@pytest.mark.parametrize("window_s", [0, -1, MAX_DEDUP_WINDOW_S + 1])
def test_a_window_out_of_bounds_is_refused(window_s: int) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_request(request(dedup={"window_s": window_s}))
    assert caught.value.field == "dedup/window_s"


def test_a_request_without_dedup_options_has_the_defaults() -> None:
    assert request()["dedup"] == {"window_s": None, "bypass": False}
    validate_request(request(dedup={"window_s": MAX_DEDUP_WINDOW_S, "bypass": True}))


def test_windows_per_message_type_are_read_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_DEDUP_WINDOWS", '{"otp": 300, "marketing": 86400}')
    assert load_settings(IngestSettings).dedup_windows == {"otp": 300, "marketing": 86400}
    monkeypatch.delenv("HERALD_DEDUP_WINDOWS")
    assert load_settings(IngestSettings).dedup_windows == {}


@pytest.mark.parametrize("value", ['{"otp": 0}', f'{{"otp": {MAX_DEDUP_WINDOW_S + 1}}}', '{"otp": "soon"}', "[300]"])
def test_a_bad_window_per_type_stops_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    monkeypatch.setenv("HERALD_DEDUP_WINDOWS", value)
    with pytest.raises(ConfigurationError):
        load_settings(IngestSettings)
    assert "HERALD_DEDUP_WINDOWS" in capsys.readouterr().err


def test_the_query_string_is_part_of_the_fingerprint() -> None:
    assert fingerprint(b"", "reason=a") != fingerprint(b"", "reason=b")
    assert fingerprint(b"{}", "") == fingerprint(b"{ }", "")
