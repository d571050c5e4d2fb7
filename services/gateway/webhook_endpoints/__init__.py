"""Webhook endpoints: URLs told when the tenant's notifications change status.

Each endpoint receives ``notification.<status>`` events (those it subscribed to, or all), POSTed by
sender-webhook and signed per Standard Webhooks with the endpoint's own secret. The secret is derived
from ``HERALD_WEBHOOK_SIGNING_KEY`` (never stored) and answered only by create and rotate-secret (and
their replays under the same ``Idempotency-Key``). Registering, changing, rotating and deleting are for
admins: an endpoint receives every notification's status; readers may list endpoints and their logs.
"""
