"""Standard Webhooks signatures (https://www.standardwebhooks.com), with one secret per tenant.

Each tenant's signing secret is derived from one master key (HMAC-SHA256 of the tenant id), so no
secret is stored per tenant and one tenant's secret reveals nothing of another's. Receivers verify
with any Standard Webhooks library, e.g. ``standardwebhooks.Webhook(secret).verify(body, headers)``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"


def tenant_secret(master_key: bytes, tenant_id: str) -> str:
    """The tenant's signing secret in the Standard Webhooks form ``whsec_<base64>``."""
    digest = hmac.new(master_key, tenant_id.encode(), hashlib.sha256).digest()
    return SECRET_PREFIX + base64.b64encode(digest).decode()


def signed_headers(secret: str, message_id: str, sent_at: datetime, body: str) -> dict[str, str]:
    """The three headers a receiver checks; ``message_id`` stays the same across retries."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, sent_at, body),
    }
