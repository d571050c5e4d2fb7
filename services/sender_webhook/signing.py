"""Standard Webhooks signatures (https://www.standardwebhooks.com).

Receivers verify with any Standard Webhooks library, e.g.
``standardwebhooks.Webhook(secret).verify(body, headers)``. The secrets themselves are derived in
:mod:`shared.webhook_secrets`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from standardwebhooks.webhooks import Webhook


def signed_headers(secrets: Sequence[str], message_id: str, sent_at: datetime, body: str) -> dict[str, str]:
    """The three headers a receiver checks; ``message_id`` stays the same across retries.

    With several secrets (an endpoint's new and previous one while a rotation's grace period lasts),
    ``webhook-signature`` carries one signature per secret, space-separated: a receiver holding either
    secret verifies the message.
    """
    if not secrets:
        raise ValueError("a webhook needs at least one secret to be signed with")
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": " ".join(Webhook(secret).sign(message_id, sent_at, body) for secret in secrets),
    }
