"""API keys: a key is ``hk_<env>_<random>``; the prefix makes a leaked key easy to recognise (secret
scanners, logs); only its SHA-256 and first characters are stored. A service account is a key with the
``service`` role."""

from __future__ import annotations

import secrets
import string
from collections.abc import Sequence

from services.gateway.api_keys.repository import ApiKeyRepository, ApiKeyView
from services.gateway.http.credentials import ApiKeyAuthenticator

# 40 base62 characters: about 238 random bits, and no character a shell or URL needs escaped.
SECRET_ALPHABET = string.ascii_letters + string.digits
SECRET_LENGTH = 40


def new_secret(env: str) -> str:
    """A new API key: ``hk_<env>_`` and random base62 characters."""
    return f"hk_{env}_" + "".join(secrets.choice(SECRET_ALPHABET) for _ in range(SECRET_LENGTH))


async def create(
    keys: ApiKeyRepository, *, env: str, tenant_id: str, name: str, role: str, scopes: Sequence[str] | None
) -> tuple[ApiKeyView, str]:
    """A new key of ``tenant_id`` and its secret."""
    secret = new_secret(env)
    created = await keys.create_key(tenant_id, name, secret, role, scopes)
    if created is None:  # a 238-bit collision: not worth a retry loop
        raise RuntimeError("a new API key collided with an existing one")
    return created, secret


async def revoke(keys: ApiKeyRepository, authenticator: ApiKeyAuthenticator, *, tenant_id: str, key_id: str) -> bool:
    """Revoke a live key: refused at once by this replica (forgotten by its cache), by the others once their
    cache entry expires. False when there is no such live key."""
    key_hash = await keys.revoke_by_id(tenant_id, key_id)
    if key_hash is None:
        return False
    authenticator.forget(key_hash)
    return True
