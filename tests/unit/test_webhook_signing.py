"""Standard Webhooks signatures, verified by the reference library: one secret per tenant, and per
webhook endpoint and version, with both secrets of a rotation's grace period on one message."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.sender_webhook.signing import signed_headers
from shared.webhook_secrets import endpoint_secret, tenant_secret

pytestmark = pytest.mark.unit

MASTER = b"m" * 32
BODY = '{"type":"notification","notification_id":"n1"}'
ENDPOINT = str(uuid.uuid4())


def test_a_receiver_verifies_the_signature_with_the_tenants_secret() -> None:
    secret = tenant_secret(MASTER, "acme")
    headers = signed_headers([secret], "msg_1", datetime.now(UTC), BODY)
    assert Webhook(secret).verify(BODY, headers) == {"type": "notification", "notification_id": "n1"}


def test_another_tenants_secret_or_a_changed_body_fails_verification() -> None:
    headers = signed_headers([tenant_secret(MASTER, "acme")], "msg_1", datetime.now(UTC), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(tenant_secret(MASTER, "globex")).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(tenant_secret(MASTER, "acme")).verify(BODY.replace("n1", "n2"), headers)


def test_secrets_are_stable_per_tenant_and_in_the_standard_form() -> None:
    assert tenant_secret(MASTER, "acme") == tenant_secret(MASTER, "acme")
    assert tenant_secret(MASTER, "acme") != tenant_secret(MASTER, "globex")
    assert tenant_secret(MASTER, "acme").startswith("whsec_")
    assert tenant_secret(b"k" * 32, "acme") != tenant_secret(MASTER, "acme")


def test_an_endpoints_secret_is_its_own_per_version_tenant_and_master_key() -> None:
    secret = endpoint_secret(MASTER, "acme", ENDPOINT, 1)
    assert secret == endpoint_secret(MASTER, "acme", ENDPOINT, 1)
    assert secret.startswith("whsec_")
    others = {
        endpoint_secret(MASTER, "acme", ENDPOINT, 2),
        endpoint_secret(MASTER, "globex", ENDPOINT, 1),
        endpoint_secret(MASTER, "acme", str(uuid.uuid4()), 1),
        endpoint_secret(b"k" * 32, "acme", ENDPOINT, 1),
        tenant_secret(MASTER, "acme"),
        # A tenant named like an endpoint secret's input cannot get that secret as its own.
        tenant_secret(MASTER, f"webhook-endpoint|acme|{ENDPOINT}|1"),
    }
    assert secret not in others
    assert len(others) == 6


def test_during_a_rotations_grace_period_either_secret_verifies_the_same_message() -> None:
    new, previous = endpoint_secret(MASTER, "acme", ENDPOINT, 2), endpoint_secret(MASTER, "acme", ENDPOINT, 1)
    headers = signed_headers([new, previous], "msg_1", datetime.now(UTC), BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (new, previous):
        assert Webhook(secret).verify(BODY, headers)["notification_id"] == "n1"
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint_secret(MASTER, "acme", ENDPOINT, 3)).verify(BODY, headers)


def test_after_the_grace_period_only_the_new_secret_verifies() -> None:
    headers = signed_headers([endpoint_secret(MASTER, "acme", ENDPOINT, 2)], "msg_1", datetime.now(UTC), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint_secret(MASTER, "acme", ENDPOINT, 1)).verify(BODY, headers)


def test_a_message_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="at least one secret"):
        signed_headers([], "msg_1", datetime.now(UTC), BODY)
