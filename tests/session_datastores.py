"""Postgres and Redis for a test session: the configured ones if they answer, else private ones.

``HERALD_TEST_DATABASE_URL`` and ``HERALD_TEST_REDIS_URL`` (defaults: the usual local ports) are used
when their servers answer; otherwise the session starts its own on free ports with the code ``make up``
uses (:mod:`infra.local.datastores`), points both variables at them (pytest-xdist workers, started
later, inherit them) and stops them at its end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from infra.local.datastores import (
    Datastores,
    PostgresServer,
    RedisServer,
    postgres_reachable,
    redact,
    redis_reachable,
)

DATABASE_VARIABLE = "HERALD_TEST_DATABASE_URL"
REDIS_VARIABLE = "HERALD_TEST_REDIS_URL"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass
class SessionDatastores:
    """What the session uses, what it started for it, and where a private Postgres keeps its data."""

    stores: Datastores
    postgres_folder: Path | None = None

    def describe(self) -> list[str]:
        """One line per datastore: its URL, and whether the session started it."""
        started = {server.url for server in self.stores.started}
        return [
            f"{name}: {redact(url)} ({'started by this test session' if url in started else 'configured'})"
            for name, url in (("postgres", self.stores.database_url), ("redis", self.stores.redis_url))
        ]

    def stop(self) -> None:
        """Stop what was started, and delete the private Postgres' data."""
        self.stores.stop()
        if self.postgres_folder is not None:
            shutil.rmtree(self.postgres_folder, ignore_errors=True)


def provide_datastores() -> SessionDatastores:
    """Reachable Postgres and Redis, started if need be; the environment variables name them afterwards."""
    session = SessionDatastores(
        Datastores(
            database_url=os.environ.get(DATABASE_VARIABLE, DEFAULT_DATABASE_URL),
            redis_url=os.environ.get(REDIS_VARIABLE, DEFAULT_REDIS_URL),
        )
    )
    try:
        if not redis_reachable(session.stores.redis_url):
            redis = RedisServer(line_sink=None)
            session.stores.started.append(redis)
            redis.start()
            session.stores.redis_url = redis.url
        if not postgres_reachable(session.stores.database_url):
            # Under /tmp, searchable by others: as root the server runs as user postgres, which must reach it.
            session.postgres_folder = Path(tempfile.mkdtemp(prefix="herald-test-postgres-"))
            session.postgres_folder.chmod(0o711)
            postgres = PostgresServer(session.postgres_folder / "data", database="postgres", line_sink=None)
            session.stores.started.append(postgres)
            postgres.start()
            session.stores.database_url = postgres.url
    except BaseException:
        session.stop()
        raise
    os.environ[DATABASE_VARIABLE] = session.stores.database_url
    os.environ[REDIS_VARIABLE] = session.stores.redis_url
    return session
