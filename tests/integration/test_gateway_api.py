"""The HTTP gateway with its real dependencies: Postgres for keys and status, the broker for requests.

The app runs in ``TestClient`` as a context manager, so its lifespan opens the real pool and producer.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from services.gateway.api_keys.repository import ApiKeyRepository
from services.gateway.settings import GatewaySettings
from shared.kafka.records import KIND, TENANT
from shared.messages import NOTIFICATION_REQUEST, Content
from shared.requests import notification_id_for
from shared.storage.database import create_pool
from tests.integration.conftest import DEV_TENANT, MAX_BODY_BYTES, assert_problem, auth
from tests.kafka_helpers import read_topic

pytestmark = pytest.mark.integration

NOTIFICATIONS = "/api/v1/notifications"


def body(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "channels": ["email"],
        "recipient": {"email": "ada@example.com", "user_id": "user-1"},
        "content": {"subject": "Hello {{ name }}", "text": "Hi {{ name }}", "html": "<p>Hi {{ name }}</p>"},
        "variables": {"name": "Ada"},
    }
    value.update(overrides)
    return value


async def add_tenant_with_key(database_url: str, tenant_id: str, secret: str) -> None:
    pool = await create_pool(database_url, size=1)
    try:
        keys = ApiKeyRepository(pool)
        await keys.ensure_tenant(tenant_id, "Other tenant")
        await keys.create_key(tenant_id, "test key", secret)
    finally:
        await pool.close()


# --- authentication -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="not-bearer"),
        pytest.param(auth("wrong-key-0123456789abcdef"), id="wrong-key"),
    ],
)
def test_post_without_a_valid_key_is_401(client: TestClient, headers: dict[str, str]) -> None:
    response = client.post(NOTIFICATIONS, json=body(), headers=headers)
    problem = assert_problem(response, 401)
    assert response.headers["www-authenticate"] == 'Bearer realm="herald"'
    assert problem["instance"] == NOTIFICATIONS


# --- validation -----------------------------------------------------------------------------------


def test_invalid_email_is_422_with_pointer(client: TestClient) -> None:
    response = client.post(NOTIFICATIONS, json=body(recipient={"email": "not-an-address"}), headers=auth())
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["pointer"] == "#/recipient/email"
    assert problem["errors"][0]["detail"]


def test_missing_subject_is_422_with_pointer(client: TestClient) -> None:
    response = client.post(NOTIFICATIONS, json=body(content={"text": "no subject"}), headers=auth())
    problem = assert_problem(response, 422)
    assert [e["pointer"] for e in problem["errors"]] == ["#/content/subject"]


def test_missing_body_text_is_422(client: TestClient) -> None:
    response = client.post(NOTIFICATIONS, json=body(content={"subject": "s"}), headers=auth())
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["pointer"] == "#/content/text"


def test_unknown_channel_is_422(client: TestClient) -> None:
    response = client.post(NOTIFICATIONS, json=body(channels=["email", "pigeon"]), headers=auth())
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["pointer"] == "#/channels/1"


def test_unknown_field_is_422(client: TestClient) -> None:
    response = client.post(NOTIFICATIONS, json=body(colour="blue"), headers=auth())
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["pointer"] == "#/colour"


@pytest.mark.parametrize(
    ("method", "path", "params", "json", "pointer"),
    [
        ("POST", NOTIFICATIONS, {}, body(variables={"name": "A\u0000da"}), "#/variables/name"),
        (
            "POST",
            NOTIFICATIONS,
            {},
            body(recipient={"email": "ada@example.com", "user_id": "u\u0000"}),
            "#/recipient/user_id",
        ),
        ("POST", NOTIFICATIONS, {}, body(variables={"na\u0000me": "x"}), "#/variables/name"),
        ("GET", NOTIFICATIONS, {"recipient": "a\u0000b"}, None, "#/query/recipient"),
        ("GET", f"{NOTIFICATIONS}/a%00b", {}, None, "#/path"),
    ],
)
def test_a_nul_character_anywhere_is_422_naming_where(
    client: TestClient, method: str, path: str, params: dict[str, str], json: Any, pointer: str
) -> None:
    """Postgres text cannot hold U+0000: refused up front, never a 500 from a query."""
    response = client.request(method, path, params=params, json=json, headers=auth())
    problem = assert_problem(response, 422)
    assert [error["pointer"] for error in problem["errors"]] == [pointer]


@pytest.mark.parametrize(
    ("text", "status"),
    [
        # Six characters that spell an escape, escaped themselves: no NUL in the text.
        (r'"\\u0000"', 202),
        # Not JSON (the string never ends): the route's own refusal, not the NUL check's.
        (r'"\u0000', 422),
    ],
    ids=["an-escaped-escape", "broken-json"],
)
def test_what_only_looks_like_a_nul_is_left_to_the_route(client: TestClient, text: str, status: int) -> None:
    raw = orjson.dumps(body())[:-1] + b', "metadata": {"note": ' + text.encode() + b"}}"
    response = client.post(NOTIFICATIONS, content=raw, headers={**auth(), "Content-Type": "application/json"})
    assert response.status_code == status, response.text
    if status == 422:
        assert [error["detail"] for error in response.json()["errors"]] == ["JSON decode error"]


@pytest.mark.parametrize("nul", [True, False], ids=["with-nul", "without"])
def test_a_document_nested_a_thousand_deep_is_refused_not_a_500(client: TestClient, nul: bool) -> None:
    """orjson reads 1,024 levels; a recursive walk of them overflowed Python's stack (a 500)."""
    depth = 1000
    inner = '"\\u0000"' if nul else '"x"'
    variables = '{"deep": ' + "[" * depth + inner + "]" * depth + "}"
    document = body()
    document.pop("variables")
    raw = orjson.dumps(document)[:-1] + b', "variables": ' + variables.encode() + b"}"
    response = client.post(NOTIFICATIONS, content=raw, headers={**auth(), "Content-Type": "application/json"})
    # Without a NUL, the JSON parser refuses the nesting itself: a 400 problem.
    problem = assert_problem(response, 422 if nul else 400)
    if nul:
        assert problem["errors"][0]["pointer"] == "#/variables/deep" + "/0" * depth


@pytest.mark.parametrize(
    ("attachment", "pointer"),
    [
        ({"filename": "a.pdf", "content_type": "application/pdf", "url": "ftp://x.example/a"}, "url"),
        ({"filename": "a.pdf", "content_type": "application/pdf", "content_base64": "%%%"}, "content_base64"),
        ({"filename": "../a.pdf", "content_type": "application/pdf", "url": "https://x.example/a"}, "filename"),
        ({"filename": "a.pdf", "content_type": "pdf", "url": "https://x.example/a"}, "content_type"),
    ],
)
def test_invalid_attachment_is_422_with_pointer(client: TestClient, attachment: dict[str, str], pointer: str) -> None:
    content = {
        "subject": "Invoice",
        "text": "Attached.",
        "attachments": [{"filename": "ok.txt", "content_type": "text/plain", "content_base64": "aGk="}, attachment],
    }
    response = client.post(NOTIFICATIONS, json=body(content=content), headers=auth())
    problem = assert_problem(response, 422)
    assert [e["pointer"] for e in problem["errors"]] == [f"#/content/attachments/1/{pointer}"]


def test_attachments_and_tracking_are_on_the_requests_topic(
    client: TestClient, gateway_settings: GatewaySettings
) -> None:
    attachments = [
        {"filename": "a.pdf", "content_type": "application/pdf", "url": "https://files.example.com/a.pdf"},
        {"filename": "b.txt", "content_type": "text/plain", "content_base64": "aGk="},
    ]
    content = {"subject": "Invoice", "html": "<p>Attached</p>", "attachments": attachments}
    response = client.post(
        NOTIFICATIONS, json=body(content=content, tracking={"opens": True, "clicks": True}), headers=auth()
    )
    assert response.status_code == 202, response.text
    topic = f"{gateway_settings.topic_prefix}.requests.v1"
    [record] = asyncio.run(read_topic(gateway_settings.kafka_bootstrap_servers, topic, 1))
    request = NOTIFICATION_REQUEST.decode(record.value)
    assert request["content"]["attachments"] == [
        {**attachments[0], "content_base64": None},
        {**attachments[1], "url": None},
    ]
    assert request["tracking"] == {"opens": True, "clicks": True}


def test_invalid_request_is_not_produced(client: TestClient, gateway_settings: GatewaySettings) -> None:
    """A 422 produces nothing: the only record on the topic is the valid request sent after it."""
    assert client.post(NOTIFICATIONS, json=body(content={"text": "x"}), headers=auth()).status_code == 422
    accepted = client.post(NOTIFICATIONS, json=body(), headers=auth())
    assert accepted.status_code == 202
    [record] = asyncio.run(
        read_topic(gateway_settings.kafka_bootstrap_servers, f"{gateway_settings.topic_prefix}.requests.v1", 1)
    )
    assert NOTIFICATION_REQUEST.decode(record.value)["notification_id"] == accepted.json()["id"]


# --- accepting and reading ------------------------------------------------------------------------


def test_accepted_notification_is_found_right_after(client: TestClient) -> None:
    response = client.post(NOTIFICATIONS, json=body(), headers=auth())
    assert response.status_code == 202, response.text
    accepted = response.json()
    notification_id = accepted["id"]
    assert uuid.UUID(notification_id)
    assert accepted["status"] == "accepted"
    assert response.headers["location"] == f"{NOTIFICATIONS}/{notification_id}"
    assert accepted["links"]["self"] == response.headers["location"]

    found = client.get(response.headers["location"], headers=auth())
    assert found.status_code == 200, found.text
    view = found.json()
    assert view["id"] == notification_id
    assert view["status"] == "accepted"
    assert view["idempotency_key"] is None
    assert view["attempts"] == 0
    assert view["history"] == []


def test_accepted_request_is_on_the_requests_topic(client: TestClient, gateway_settings: GatewaySettings) -> None:
    """The record carries the tenant, the unrendered templates and the variables, keyed by recipient."""
    response = client.post(
        NOTIFICATIONS,
        json=body(priority="high", metadata={"campaign": "welcome"}),
        headers=auth(),
    )
    assert response.status_code == 202, response.text
    # A high-priority request goes to the high lane of the requests topic.
    topic = f"{gateway_settings.topic_prefix}.requests.high.v1"
    [record] = asyncio.run(read_topic(gateway_settings.kafka_bootstrap_servers, topic, 1))
    request = NOTIFICATION_REQUEST.decode(record.value)
    assert request["notification_id"] == response.json()["id"]
    assert request["tenant_id"] == DEV_TENANT
    assert request["channels"] == ["email"]
    assert request["priority"] == "high"
    assert request["metadata"] == {"campaign": "welcome"}
    assert request["recipient"]["email"] == "ada@example.com"
    # Templates are rendered later, by the router.
    templates: Content = {
        "subject": "Hello {{ name }}",
        "text": "Hi {{ name }}",
        "html": "<p>Hi {{ name }}</p>",
        "attachments": [],
        "provider_templates": {},
        "template": None,
    }
    assert request["content"] == templates
    assert request["tracking"] == {"opens": False, "clicks": False}
    assert orjson.loads(request["variables_json"]) == {"name": "Ada"}
    assert record.key == b"dev:user-1"
    headers = dict(record.headers)
    assert headers[TENANT] == DEV_TENANT.encode()
    assert headers[KIND] == b"notification_request"


def test_same_idempotency_key_gives_the_same_id(client: TestClient) -> None:
    headers = {**auth(), "Idempotency-Key": "order-42"}
    first = client.post(NOTIFICATIONS, json=body(), headers=headers)
    again = client.post(NOTIFICATIONS, json=body(), headers=headers)
    other = client.post(NOTIFICATIONS, json=body(), headers={**auth(), "Idempotency-Key": "order-43"})
    assert first.status_code == again.status_code == other.status_code == 202
    assert first.json()["id"] == again.json()["id"] == notification_id_for(DEV_TENANT, "order-42")
    assert other.json()["id"] != first.json()["id"]
    view = client.get(f"{NOTIFICATIONS}/{first.json()['id']}", headers=auth()).json()
    assert view["idempotency_key"] == "order-42"


def test_other_tenant_cannot_see_the_notification(client: TestClient, database_url: str) -> None:
    other_key = f"other-{uuid.uuid4().hex}"
    asyncio.run(add_tenant_with_key(database_url, "globex", other_key))
    created = client.post(NOTIFICATIONS, json=body(), headers=auth())
    assert created.status_code == 202
    location = created.headers["location"]
    assert client.get(location, headers=auth()).status_code == 200
    assert_problem(client.get(location, headers=auth(other_key)), 404)


def test_unknown_id_is_404_problem(client: TestClient) -> None:
    missing = str(uuid.uuid4())
    problem = assert_problem(client.get(f"{NOTIFICATIONS}/{missing}", headers=auth()), 404)
    assert missing in problem["detail"]
    assert problem["instance"] == f"{NOTIFICATIONS}/{missing}"


def test_malformed_id_is_404_problem(client: TestClient) -> None:
    assert_problem(client.get(f"{NOTIFICATIONS}/not-a-uuid", headers=auth()), 404)


def test_oversized_body_is_413_problem(client: TestClient) -> None:
    payload = body(variables={"padding": "x" * MAX_BODY_BYTES})
    problem = assert_problem(client.post(NOTIFICATIONS, json=payload, headers=auth()), 413)
    assert str(MAX_BODY_BYTES) in problem["detail"]


# --- operations -----------------------------------------------------------------------------------


def test_health(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {}}


def test_ready_runs_every_check(client: TestClient) -> None:
    response = client.get("/ready")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ok",
        "checks": {"kafka": "ok", "postgres": "ok"},
        "degraded": {"redis": "ok"},
    }


def test_metrics_count_requests_by_route(client: TestClient) -> None:
    assert client.post(NOTIFICATIONS, json=body(), headers=auth()).status_code == 202
    response = client.get("/metrics")
    assert response.status_code == 200
    assert "herald_http_requests_total" in response.text
    assert 'herald_http_requests_total{method="POST",route="/api/v1/notifications",status="202"}' in response.text


def test_unauthenticated_invalid_body_is_401_not_422(client: TestClient) -> None:
    """Without a key the caller learns nothing about its body."""
    response = client.post(NOTIFICATIONS, json={"channels": []})
    assert_problem(response, 401)


def test_get_without_key_is_401(client: TestClient) -> None:
    response = client.get(f"{NOTIFICATIONS}/{uuid.uuid4()}")
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == 'Bearer realm="herald"'


def test_oversized_chunked_body_is_413(client: TestClient) -> None:
    payload = orjson.dumps(body(variables={"padding": "x" * MAX_BODY_BYTES}))
    assert len(payload) > MAX_BODY_BYTES

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(payload), 1000):
            yield payload[start : start + 1000]

    response = client.post(NOTIFICATIONS, content=chunks(), headers={**auth(), "Content-Type": "application/json"})
    assert "content-length" not in response.request.headers
    assert_problem(response, 413)


def test_a_recurrence_every_second_is_refused_naming_the_cron(client: TestClient) -> None:
    """A notification every second, for ever, from one request: refused below HERALD_RECURRENCE_MIN_INTERVAL_S."""
    response = client.post(NOTIFICATIONS, json=body(recurrence={"cron": "* * * * * *"}), headers=auth())
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["pointer"] == "#/recurrence/cron"
    assert "at least 900 s" in problem["errors"][0]["detail"]
