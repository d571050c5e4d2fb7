"""Standard Webhooks signatures: verified by the reference library, one secret per tenant."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.sender_webhook.signing import signed_headers, tenant_secret

pytestmark = pytest.mark.unit

MASTER = b"m" * 32
BODY = '{"type":"notification","notification_id":"n1"}'


def test_a_receiver_verifies_the_signature_with_the_tenants_secret() -> None:
    secret = tenant_secret(MASTER, "acme")
    headers = signed_headers(secret, "msg_1", datetime.now(UTC), BODY)
    assert Webhook(secret).verify(BODY, headers) == {"type": "notification", "notification_id": "n1"}


def test_another_tenants_secret_or_a_changed_body_fails_verification() -> None:
    headers = signed_headers(tenant_secret(MASTER, "acme"), "msg_1", datetime.now(UTC), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(tenant_secret(MASTER, "globex")).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(tenant_secret(MASTER, "acme")).verify(BODY.replace("n1", "n2"), headers)


def test_secrets_are_stable_per_tenant_and_in_the_standard_form() -> None:
    assert tenant_secret(MASTER, "acme") == tenant_secret(MASTER, "acme")
    assert tenant_secret(MASTER, "acme") != tenant_secret(MASTER, "globex")
    assert tenant_secret(MASTER, "acme").startswith("whsec_")
    assert tenant_secret(b"k" * 32, "acme") != tenant_secret(MASTER, "acme")
