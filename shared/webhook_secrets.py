"""Webhook signing secrets (Standard Webhooks' ``whsec_<base64>``), derived from one master key.

Nothing secret is stored per tenant or endpoint: each secret is HMAC-SHA256 under
``HERALD_WEBHOOK_SIGNING_KEY`` of what it belongs to, so the gateway (which shows an endpoint's
secret once) and sender-webhook (which signs with it) compute the same value, and one secret reveals
nothing of another. Rotating an endpoint's secret moves it to the next version.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

SECRET_PREFIX = "whsec_"
# Separates an endpoint secret's parts and sets them apart from a tenant secret's input: no tenant id
# (Postgres text) contains NUL, so no tenant's secret can equal an endpoint's.
_ENDPOINT_DOMAIN = "webhook-endpoint"


def _secret(master_key: bytes, message: str) -> str:
    digest = hmac.new(master_key, message.encode(), hashlib.sha256).digest()
    return SECRET_PREFIX + base64.b64encode(digest).decode()


def tenant_secret(master_key: bytes, tenant_id: str) -> str:
    """The tenant's secret: signs the webhook channel's POSTs to recipients' URLs."""
    return _secret(master_key, tenant_id)


def endpoint_secret(master_key: bytes, tenant_id: str, endpoint_id: str, version: int) -> str:
    """Version ``version`` of a registered endpoint's secret: signs its status-change events."""
    return _secret(master_key, f"{_ENDPOINT_DOMAIN}\0{tenant_id}\0{endpoint_id}\0{version}")
