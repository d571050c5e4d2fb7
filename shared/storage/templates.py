"""Stored notification templates: written and read by the gateway, looked up by the router per batch.

A template (``templates``) is a tenant's slot named by the caller's ``template_id``; its content is in
immutable, numbered versions (``template_versions``). Every query names its tenant; a soft-deleted
template is gone for every read here (its rows stay for the record).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from shared.storage.database import Pool
from shared.storage.pagination import PageCursor, SqlFilter, newest_first, sql

# (tenant_id, template_id, version): a version, or None for the latest one.
TemplateRef = tuple[str, str, int | None]

_TEMPLATE = "t.id::text, t.template_id, t.name, t.description, t.latest_version, t.created_at, t.updated_at"
_VERSION = "v.tenant_id, v.template_id, v.version, v.channels, v.locales, v.variables, v.created_at, v.created_by"
_ONE_VERSION = "(v.tenant_id, v.template_id, v.version) = ($1, $2, $3)"
_LIVE = "t.tenant_id = $1 AND t.template_id = $2 AND t.deleted_at IS NULL"


@dataclass(frozen=True)
class VersionContent:
    """What a version holds: per channel its field sources, the variables they use by name (each
    ``{"description": ..., "sample": ...}``), and per BCP 47 tag variants of ``channels`` for that locale."""

    channels: Mapping[str, Mapping[str, str | None]]
    variables: Mapping[str, Mapping[str, Any]]
    locales: Mapping[str, Mapping[str, Mapping[str, str | None]]] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class VersionSummary:
    """One version of a template, without its content."""

    version: int
    created_at: datetime
    created_by: str


@dataclass(frozen=True, kw_only=True)
class TemplateVersion(VersionSummary):
    """One version of a template with its content."""

    tenant_id: str
    template_id: str
    channels: dict[str, dict[str, str | None]]
    locales: dict[str, dict[str, dict[str, str | None]]]
    variables: dict[str, dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class Template:
    """A live template; ``id`` is its keyset for pages, ``template_id`` the name callers use."""

    id: str
    template_id: str
    name: str
    description: str | None
    latest_version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class TemplateFilter(SqlFilter):
    """A tenant's live templates."""

    tenant_id: str
    live: bool = field(default=True, metadata=sql("(deleted_at IS NULL) = {}"))


def _template(row: asyncpg.Record) -> Template:
    return Template(
        id=row["id"],
        template_id=row["template_id"],
        name=row["name"],
        description=row["description"],
        latest_version=row["latest_version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _version(row: asyncpg.Record) -> TemplateVersion:
    return TemplateVersion(
        tenant_id=row["tenant_id"],
        template_id=row["template_id"],
        version=row["version"],
        channels=row["channels"],
        locales=row["locales"],
        variables=row["variables"],
        created_at=row["created_at"],
        created_by=row["created_by"],
    )


class TemplateRepository:
    """Every query is scoped to one tenant (the router's batch lookup names one per template)."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def create(
        self,
        tenant_id: str,
        template_id: str,
        *,
        name: str,
        description: str | None,
        content: VersionContent,
        created_by: str,
    ) -> tuple[Template, TemplateVersion] | None:
        """Create a template with its first version; None if a live one has this id.

        A deleted one with this id lives again, its new version numbered after its old ones."""
        statement = f"""
            INSERT INTO templates AS t (tenant_id, template_id, name, description, latest_version)
            VALUES ($1, $2, $3, $4, 1)
            ON CONFLICT (tenant_id, template_id) DO UPDATE
                SET name = EXCLUDED.name, description = EXCLUDED.description,
                    latest_version = t.latest_version + 1, deleted_at = NULL, created_at = now(), updated_at = now()
                WHERE t.deleted_at IS NOT NULL
            RETURNING {_TEMPLATE}
        """
        return await self._with_version(statement, tenant_id, template_id, name, description, content, created_by)

    async def add_version(
        self,
        tenant_id: str,
        template_id: str,
        *,
        name: str,
        description: str | None,
        content: VersionContent,
        created_by: str,
    ) -> tuple[Template, TemplateVersion] | None:
        """Replace the template's name and description and add a version, the latest from now on; None if
        there is no live template with this id. Concurrent updates queue on the template's row."""
        statement = f"""
            UPDATE templates AS t
            SET name = $3, description = $4, latest_version = latest_version + 1, updated_at = now()
            WHERE {_LIVE}
            RETURNING {_TEMPLATE}
        """
        return await self._with_version(statement, tenant_id, template_id, name, description, content, created_by)

    async def _with_version(
        self,
        statement: str,
        tenant_id: str,
        template_id: str,
        name: str,
        description: str | None,
        content: VersionContent,
        created_by: str,
    ) -> tuple[Template, TemplateVersion] | None:
        """Run ``statement`` (on ``$1``-``$4``: tenant, template id, name, description; it returns the
        template's row with its new ``latest_version``, or none), then insert that version, in one transaction."""
        async with self._pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(statement, tenant_id, template_id, name, description)
            if row is None:
                return None
            template = _template(row)
            return template, await self._insert_version(connection, tenant_id, template, content, created_by)

    @staticmethod
    async def _insert_version(
        connection: asyncpg.pool.PoolConnectionProxy[asyncpg.Record],
        tenant_id: str,
        template: Template,
        content: VersionContent,
        created_by: str,
    ) -> TemplateVersion:
        row = await connection.fetchrow(
            f"""
            INSERT INTO template_versions AS v
                (tenant_id, template_id, version, channels, locales, variables, created_by)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            RETURNING {_VERSION}
            """,
            tenant_id,
            template.template_id,
            template.latest_version,
            content.channels,
            content.locales,
            content.variables,
            created_by,
        )
        assert row is not None
        return _version(row)

    async def get(
        self, tenant_id: str, template_id: str, version: int | None = None
    ) -> tuple[Template, TemplateVersion] | None:
        """A live template with one of its versions (None: the latest); None if either does not exist."""
        async with self._pool.acquire() as connection, connection.transaction(isolation="repeatable_read"):
            row = await connection.fetchrow(
                f"SELECT {_TEMPLATE} FROM templates t WHERE {_LIVE}", tenant_id, template_id
            )
            if row is None:
                return None
            template = _template(row)
            found = await connection.fetchrow(
                f"SELECT {_VERSION} FROM template_versions v WHERE {_ONE_VERSION}",
                tenant_id,
                template_id,
                template.latest_version if version is None else version,
            )
        return None if found is None else (template, _version(found))

    async def page(self, tenant_id: str, limit: int, after: PageCursor | None = None) -> list[Template]:
        """Up to ``limit`` of the tenant's live templates, newest first, starting after ``after``."""
        rows = await newest_first(
            self._pool,
            columns=_TEMPLATE,
            table="templates t",
            where=TemplateFilter(tenant_id),
            limit=limit,
            after=after,
        )
        return [_template(row) for row in rows]

    async def versions(self, tenant_id: str, template_id: str) -> list[VersionSummary] | None:
        """A live template's versions, newest first; None if there is no such template."""
        async with self._pool.acquire() as connection, connection.transaction(isolation="repeatable_read"):
            if not await connection.fetchval(f"SELECT true FROM templates t WHERE {_LIVE}", tenant_id, template_id):
                return None
            rows = await connection.fetch(
                """
                SELECT version, created_at, created_by FROM template_versions
                WHERE tenant_id = $1 AND template_id = $2
                ORDER BY version DESC
                """,
                tenant_id,
                template_id,
            )
        return [
            VersionSummary(version=r["version"], created_at=r["created_at"], created_by=r["created_by"]) for r in rows
        ]

    async def delete(self, tenant_id: str, template_id: str) -> bool:
        """Soft-delete a live template (requests naming it are refused from now on); False if there is none."""
        deleted = await self._pool.fetchval(
            f"UPDATE templates AS t SET deleted_at = now(), updated_at = now() WHERE {_LIVE} RETURNING true",
            tenant_id,
            template_id,
        )
        return deleted is not None

    async def versions_for(self, refs: Collection[TemplateRef]) -> dict[TemplateRef, TemplateVersion]:
        """The versions ``refs`` name (None: the latest) in one query; a ref whose template is missing or
        deleted, or whose version does not exist, is absent from the answer."""
        if not refs:
            return {}
        tenants, template_ids, versions = zip(*refs, strict=True)
        rows = await self._pool.fetch(
            f"""
            SELECT r.version AS asked, {_VERSION}
            FROM unnest($1::text[], $2::text[], $3::int[]) AS r (tenant_id, template_id, version)
            JOIN templates t ON t.tenant_id = r.tenant_id AND t.template_id = r.template_id AND t.deleted_at IS NULL
            JOIN template_versions v ON v.tenant_id = t.tenant_id AND v.template_id = t.template_id
                                    AND v.version = COALESCE(r.version, t.latest_version)
            """,
            list(tenants),
            list(template_ids),
            list(versions),
        )
        return {(row["tenant_id"], row["template_id"], row["asked"]): _version(row) for row in rows}
