"""Store the first admin API key of a tenant: the chart's firstAdminKey Job runs this module.

The key's secret is made by the operator and read from a Kubernetes Secret (HERALD_FIRST_ADMIN_KEY): only
its hash reaches Postgres and nothing of it is printed, so the Secret stays the one place it is kept.
Storing the same key again changes nothing, and a key revoked since stays revoked: the Job can run on every
install and upgrade.

    HERALD_DATABASE_URL=... HERALD_FIRST_ADMIN_KEY=... HERALD_FIRST_ADMIN_TENANT=acme \
        python -m services.gateway.api_keys.first_admin_key
"""

from __future__ import annotations

import asyncio
import os
import sys

from services.gateway.api_keys.repository import ApiKeyRepository
from shared.storage.database import create_pool

# As long as the keys the API makes (hk_<env>_ and 40 base62 characters): a short secret is guessable.
MIN_LENGTH = 40


async def store(dsn: str, tenant: str, tenant_name: str, key_name: str, secret: str) -> bool:
    """Store ``secret`` as an admin key of ``tenant`` (created if new); False if it was already stored."""
    pool = await create_pool(dsn, 1)
    try:
        keys = ApiKeyRepository(pool)
        await keys.ensure_tenant(tenant, tenant_name)
        return await keys.create_key(tenant, key_name, secret, role="admin") is not None
    finally:
        await pool.close()


def main() -> int:
    """Store the key the environment names; 2 when it is missing or too short."""
    secret = os.environ.get("HERALD_FIRST_ADMIN_KEY", "")
    tenant = os.environ.get("HERALD_FIRST_ADMIN_TENANT", "")
    if len(secret) < MIN_LENGTH or not tenant:
        print(
            f"HERALD_FIRST_ADMIN_TENANT and HERALD_FIRST_ADMIN_KEY ({MIN_LENGTH}+ characters) are required",
            file=sys.stderr,
        )
        return 2
    created = asyncio.run(
        store(
            os.environ["HERALD_DATABASE_URL"],
            tenant,
            os.environ.get("HERALD_FIRST_ADMIN_TENANT_NAME") or tenant,
            os.environ.get("HERALD_FIRST_ADMIN_KEY_NAME") or "first admin key",
            secret,
        )
    )
    print(f"first admin key of tenant {tenant}: {'stored' if created else 'already stored, left as it is'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
