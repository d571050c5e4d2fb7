"""Builders of valid records for tests, with any field overridable."""

from __future__ import annotations

import uuid
from typing import Any

from shared.messages import EmailDelivery


def email_delivery(**overrides: Any) -> EmailDelivery:
    """A valid delivery with fresh ids; ``overrides`` replace any field."""
    value: dict[str, Any] = {
        "delivery_id": str(uuid.uuid4()),
        "notification_id": str(uuid.uuid4()),
        "tenant_id": "acme",
        "attempt": 1,
        "priority": "normal",
        "to": "ada@example.com",
        "subject": "Your order shipped",
        "text": "It is on its way.",
        "html": "<p>It is on its way.</p>",
        "metadata": {},
    }
    value.update(overrides)
    return value  # type: ignore[return-value]
