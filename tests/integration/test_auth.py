"""Roles, API-key management and JWTs on the real gateway (Postgres, Redis, the broker).

Keys are created through the API with the dev key (an admin key); JWTs are signed here, HS256 with a
shared secret and RS256 with a key whose JWKS a local HTTP server serves.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from pydantic import SecretStr

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from tests.integration.conftest import DEV_TENANT, PROBLEM_JSON, assert_problem, auth
from tests.integration.test_gateway_api import body
from tests.scripted_http import Reply, ScriptedServer

pytestmark = pytest.mark.integration

KEYS = "/api/v1/api-keys"
NOTIFICATIONS = "/api/v1/notifications"
SUPPRESSIONS = "/api/v1/suppressions"
ISSUER = "https://id.example.com/"
AUDIENCE = "herald"
HS256_SECRET = "hs256-test-secret-0123456789abcdef0123"
KID = "test-key-1"


def create_key(client: TestClient, role: str, name: str = "test", scopes: list[str] | None = None) -> dict[str, Any]:
    response = client.post(KEYS, json={"name": name, "role": role, "scopes": scopes}, headers=auth())
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


# --- roles ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "can_send"),
    [("viewer", False), ("sender", True), ("service", True), ("admin", True)],
)
def test_each_role_reaches_what_it_may(client: TestClient, role: str, can_send: bool) -> None:
    headers = auth(create_key(client, role)["secret"])
    assert client.get(NOTIFICATIONS, headers=headers).status_code == 200
    sent = client.post(NOTIFICATIONS, json=body(), headers=headers)
    if can_send:
        assert sent.status_code == 202, sent.text
        assert client.get(sent.json()["links"]["self"], headers=headers).status_code == 200
    else:
        problem = assert_problem(sent, 403)
        assert "viewer" in problem["detail"]
        # A mutating route other than sending: refused to a viewer too.
        assert_problem(
            client.delete(SUPPRESSIONS, params={"channel": "email", "address": "a@b.c"}, headers=headers), 403
        )
    managed = client.get(KEYS, headers=headers)
    if role == "admin":
        assert managed.status_code == 200
    else:
        assert_problem(managed, 403)
        assert_problem(client.post(KEYS, json={"name": "x", "role": "admin"}, headers=headers), 403)


def test_a_scoped_key_reaches_only_its_scopes(client: TestClient) -> None:
    created = create_key(client, "sender", scopes=["notifications:write", "suppressions:read"])
    assert created["scopes"] == ["notifications:write", "suppressions:read"]
    headers = auth(created["secret"])
    sent = client.post(NOTIFICATIONS, json=body(), headers=headers)
    assert sent.status_code == 202, sent.text
    # Write implies read on the same resource.
    assert client.get(sent.json()["links"]["self"], headers=headers).status_code == 200
    assert client.get(SUPPRESSIONS, headers=headers).status_code == 200
    problem = assert_problem(
        client.delete(SUPPRESSIONS, params={"channel": "email", "address": "a@b.c"}, headers=headers), 403
    )
    assert "suppressions:write" in problem["detail"]
    assert_problem(client.get("/api/v1/dead-letters", headers=headers), 403)
    # Scopes narrow a role, never widen it: an admin-only route stays refused to a sender.
    assert "role" in assert_problem(client.get(KEYS, headers=headers), 403)["detail"]
    listed = {key["id"]: key for key in client.get(KEYS, headers=auth()).json()}
    assert listed[created["id"]]["scopes"] == created["scopes"]


def test_an_unknown_scope_is_refused(client: TestClient) -> None:
    refused = client.post(KEYS, json={"name": "x", "role": "sender", "scopes": ["everything:write"]}, headers=auth())
    problem = assert_problem(refused, 422)
    assert any("scopes" in str(error) for error in problem["errors"]), problem


def test_key_management_without_a_credential_is_401(client: TestClient) -> None:
    assert_problem(client.get(KEYS), 401)
    assert_problem(client.post(KEYS, json={"name": "x", "role": "admin"}), 401)
    assert_problem(client.get(KEYS, headers=auth("hk_live_not-a-key-0123456789")), 401)


# --- API keys -------------------------------------------------------------------------------------


def test_a_key_is_shown_once_works_and_stops_working_once_revoked(client: TestClient) -> None:
    created = create_key(client, "sender", name="billing")
    secret = created["secret"]
    assert secret.startswith("hk_live_")
    assert created["prefix"] == secret[:12]
    assert (created["name"], created["role"], created["revoked_at"]) == ("billing", "sender", None)
    assert client.post(NOTIFICATIONS, json=body(), headers=auth(secret)).status_code == 202

    listed = client.get(KEYS, headers=auth())
    assert listed.status_code == 200
    assert secret not in listed.text
    mine = next(key for key in listed.json() if key["id"] == created["id"])
    assert "secret" not in mine
    assert mine["prefix"] == created["prefix"]
    assert mine["last_used_at"] is not None
    # The dev key is listed too: an admin key.
    assert {"admin"} <= {key["role"] for key in listed.json() if key["id"] != created["id"]}

    assert client.delete(f"{KEYS}/{created['id']}", headers=auth()).status_code == 204
    assert_problem(client.get(NOTIFICATIONS, headers=auth(secret)), 401)
    revoked = next(key for key in client.get(KEYS, headers=auth()).json() if key["id"] == created["id"])
    assert revoked["revoked_at"] is not None
    assert_problem(client.delete(f"{KEYS}/{created['id']}", headers=auth()), 404)
    assert_problem(client.delete(f"{KEYS}/not-a-uuid", headers=auth()), 404)


def test_an_admin_manages_only_its_own_tenants_keys(jwt_client: TestClient) -> None:
    created = create_key(jwt_client, "admin")
    globex = auth(jwt_for(tenant="globex", role="admin"))
    assert created["id"] not in jwt_client.get(KEYS, headers=globex).text
    assert_problem(jwt_client.delete(f"{KEYS}/{created['id']}", headers=globex), 404)
    assert jwt_client.get(NOTIFICATIONS, headers=auth(created["secret"])).status_code == 200


def test_a_new_key_needs_a_known_role_and_a_name(client: TestClient) -> None:
    problem = assert_problem(client.post(KEYS, json={"name": "x", "role": "root"}, headers=auth()), 422)
    assert problem["errors"][0]["pointer"] == "#/role"
    assert_problem(client.post(KEYS, json={"name": "", "role": "viewer"}, headers=auth()), 422)


def test_an_idempotent_replay_answers_the_same_key(client: TestClient) -> None:
    # Documented: a retry with the same Idempotency-Key gets the same (one) key, secret included.
    headers = {**auth(), "Idempotency-Key": "new-key-1"}
    first = client.post(KEYS, json={"name": "ci", "role": "service"}, headers=headers)
    again = client.post(KEYS, json={"name": "ci", "role": "service"}, headers=headers)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert [key["name"] for key in client.get(KEYS, headers=auth()).json()].count("ci") == 1


# --- JWT ------------------------------------------------------------------------------------------

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwt_for(
    *,
    tenant: str | None = DEV_TENANT,
    role: Any = "sender",
    algorithm: str = "HS256",
    key: Any = HS256_SECRET,
    **claims: Any,
) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-42", "iat": now, "exp": now + 300}
    if tenant is not None:
        payload["tenant"] = tenant
    if role is not None:
        payload["role" if isinstance(role, str) else "roles"] = role
    payload.update(claims)
    return jwt.encode(payload, key, algorithm=algorithm, headers={"kid": KID} if algorithm == "RS256" else None)


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[ScriptedServer]:
    """Serves the JWKS of RSA_KEY at /jwks.json."""
    jwk = {**jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True), "kid": KID, "use": "sig"}
    server = ScriptedServer()
    server.reply = Reply(200, {"Content-Type": "application/json"}, orjson.dumps({"keys": [jwk]}))
    with server.serving():
        yield server


@pytest.fixture
def jwt_client(gateway_settings: GatewaySettings, jwks_server: ScriptedServer) -> Iterator[TestClient]:
    settings = gateway_settings.model_copy(
        update={
            "jwt_issuer": ISSUER,
            "jwt_audience": AUDIENCE,
            "jwt_hs256_secret": SecretStr(HS256_SECRET),
            "jwt_jwks_url": f"{jwks_server.url}/jwks.json",
        }
    )
    with TestClient(create_app(settings)) as running:
        yield running


def test_a_valid_hs256_token_acts_for_its_tenant_with_its_role(jwt_client: TestClient) -> None:
    sent = jwt_client.post(NOTIFICATIONS, json=body(), headers=auth(jwt_for(role="sender")))
    assert sent.status_code == 202, sent.text
    location = sent.json()["links"]["self"]
    # The same tenant's API key sees it; a viewer token (a "roles" list) reads it but cannot send.
    assert jwt_client.get(location, headers=auth()).status_code == 200
    viewer = auth(jwt_for(role=["viewer", "unknown-role"]))
    assert jwt_client.get(location, headers=viewer).status_code == 200
    assert_problem(jwt_client.post(NOTIFICATIONS, json=body(), headers=viewer), 403)
    # Another tenant's token does not find it.
    assert_problem(jwt_client.get(location, headers=auth(jwt_for(tenant="globex", role="admin"))), 404)
    # The most capable of several roles counts; a token without a known role is authenticated, not allowed.
    assert jwt_client.get(KEYS, headers=auth(jwt_for(role="viewer admin"))).status_code == 200
    assert_problem(jwt_client.get(NOTIFICATIONS, headers=auth(jwt_for(role=None))), 403)


def test_an_admin_of_a_tenant_known_only_from_its_tokens_creates_a_key(jwt_client: TestClient) -> None:
    """No tenant row yet (its people sign in with JWTs): the key is created, not a foreign-key 500."""
    admin = auth(jwt_for(tenant="newcomer", role="admin"))
    created = jwt_client.post(KEYS, json={"name": "ci", "role": "sender"}, headers=admin)
    assert created.status_code == 201, created.text
    sent = jwt_client.post(NOTIFICATIONS, json=body(), headers=auth(created.json()["secret"]))
    assert sent.status_code == 202, sent.text
    assert [key["name"] for key in jwt_client.get(KEYS, headers=admin).json()] == ["ci"]


def test_a_token_with_a_scope_claim_reaches_only_those_scopes(jwt_client: TestClient) -> None:
    scoped = auth(jwt_for(role="admin", scope="notifications:read"))
    assert jwt_client.get(NOTIFICATIONS, headers=scoped).status_code == 200
    assert (
        "notifications:write"
        in assert_problem(jwt_client.post(NOTIFICATIONS, json=body(), headers=scoped), 403)["detail"]
    )
    assert_problem(jwt_client.get(KEYS, headers=scoped), 403)
    listed = auth(jwt_for(role="admin", scp=["api-keys:read", "notifications:write"]))
    assert jwt_client.get(KEYS, headers=listed).status_code == 200


@pytest.mark.parametrize(
    ("token", "detail"),
    [
        pytest.param(lambda: jwt_for(exp=int(time.time()) - 120), "expired", id="expired"),
        pytest.param(lambda: jwt_for(aud="someone-else"), "audience", id="wrong-audience"),
        pytest.param(lambda: jwt_for(iss="https://evil.example.com/"), "issuer", id="wrong-issuer"),
        pytest.param(lambda: jwt_for(key="another-secret-0123456789abcdef0123"), "signature", id="wrong-secret"),
        pytest.param(lambda: jwt_for(tenant=None), "tenant", id="no-tenant"),
        pytest.param(
            lambda: jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "tenant": "dev"}, HS256_SECRET),
            "exp",
            id="no-expiry",
        ),
        pytest.param(lambda: jwt_for(algorithm="none", key=None), "not accepted", id="alg-none"),
        pytest.param(lambda: jwt_for(algorithm="RS256", key=OTHER_RSA_KEY), "signature", id="rs256-other-key"),
        pytest.param(lambda: "not.a.jwt", "invalid token", id="garbage"),
    ],
)
def test_an_invalid_token_is_401(jwt_client: TestClient, token: Any, detail: str) -> None:
    response = jwt_client.get(NOTIFICATIONS, headers=auth(token()))
    problem = assert_problem(response, 401)
    assert detail.lower() in problem["detail"].lower()
    assert response.headers["www-authenticate"] == 'Bearer realm="herald"'


def test_an_rs256_token_is_verified_with_the_jwks_fetched_once(
    jwt_client: TestClient, jwks_server: ScriptedServer
) -> None:
    fetched = len(jwks_server.requests)
    token = auth(jwt_for(algorithm="RS256", key=RSA_KEY, role="viewer"))
    for _ in range(3):
        assert jwt_client.get(NOTIFICATIONS, headers=token).status_code == 200
    assert len(jwks_server.requests) - fetched <= 1
    assert [r.path for r in jwks_server.requests] == ["/jwks.json"] * len(jwks_server.requests)


def test_an_unreachable_jwks_is_503(gateway_settings: GatewaySettings) -> None:
    closed = ScriptedServer()
    url = f"{closed.url}/jwks.json"
    closed.server_close()  # nothing listens there any more
    settings = gateway_settings.model_copy(update={"jwt_issuer": ISSUER, "jwt_audience": AUDIENCE, "jwt_jwks_url": url})
    with TestClient(create_app(settings)) as running:
        response = running.get(NOTIFICATIONS, headers=auth(jwt_for(algorithm="RS256", key=RSA_KEY)))
    assert_problem(response, 503)


def test_a_token_is_refused_where_jwts_are_not_configured(client: TestClient) -> None:
    problem = assert_problem(client.get(NOTIFICATIONS, headers=auth(jwt_for())), 401)
    assert "JWT" in problem["detail"]
    assert client.get(NOTIFICATIONS, headers=auth()).headers["content-type"] != PROBLEM_JSON
