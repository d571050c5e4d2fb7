"""API-key management (admins only): create a key (its secret answered once), list, revoke.

A service account is a key with the ``service`` role. A key is ``hk_<env>_<random>``: the prefix makes a
leaked key easy to recognise (secret scanners, logs); only its SHA-256 and first characters are stored.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import asdict
from datetime import datetime
from typing import Literal, get_args

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.gateway.auth import ROLES, SCOPES, Admin, ApiKeyAuthenticator
from services.gateway.idempotency import IDEMPOTENT
from services.gateway.problems import PROBLEM_RESPONSES, Problem
from services.gateway.repository import ApiKeyRepository

PATH = "/api/v1/api-keys"
# 40 base62 characters: about 238 random bits, and no character a shell or URL needs escaped.
SECRET_ALPHABET = string.ascii_letters + string.digits
SECRET_LENGTH = 40

router = APIRouter(prefix=PATH, tags=["api keys"], responses=PROBLEM_RESPONSES)

Role = Literal["admin", "sender", "viewer", "service"]
assert set(get_args(Role)) == set(ROLES)  # the API names every role auth knows
Scope = Literal[SCOPES]  # type: ignore[valid-type]  # built from auth.RESOURCES, so the two cannot drift


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, examples=["billing service"])
    role: Role
    scopes: list[Scope] | None = Field(
        default=None,
        max_length=len(SCOPES),
        description="Narrow the key below its role: `<resource>:read` or `<resource>:write` (write implies read). "
        "Omitted: everything the role allows.",
        examples=[["notifications:write", "templates:read"]],
    )


class ApiKeyOut(BaseModel):
    id: str
    name: str
    role: Role
    scopes: list[str] | None = Field(description="null: everything the role allows")
    prefix: str = Field(description="The key's first characters, to tell keys apart")
    created_at: datetime
    last_used_at: datetime | None = Field(description="Accurate to the gateway's auth cache (30 s by default)")
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    secret: str = Field(description="The key itself: shown in this answer only, store it now")


def new_secret(env: str) -> str:
    """A new API key: ``hk_<env>_`` and random base62 characters."""
    return f"hk_{env}_" + "".join(secrets.choice(SECRET_ALPHABET) for _ in range(SECRET_LENGTH))


def _keys(request: Request) -> ApiKeyRepository:
    keys: ApiKeyRepository = request.app.state.api_keys
    return keys


@router.post("", status_code=201, response_model=ApiKeyCreated, dependencies=[IDEMPOTENT])
async def create_api_key(body: ApiKeyCreate, admin: Admin, request: Request) -> ApiKeyCreated:
    """Create a key (``service``: a service account). Its secret is in this answer only; a replay of the
    same ``Idempotency-Key`` answers it again, within the idempotency window."""
    secret = new_secret(request.app.state.api_key_env)
    created = await _keys(request).create_key(admin.tenant, body.name, secret, body.role, body.scopes)
    if created is None:  # a 238-bit collision: not worth a retry loop
        raise RuntimeError("a new API key collided with an existing one")
    return ApiKeyCreated(**asdict(created), secret=secret)


@router.get("", response_model=list[ApiKeyOut])
async def list_api_keys(admin: Admin, request: Request) -> list[ApiKeyOut]:
    """The tenant's keys, revoked ones included, newest first; never their secrets."""
    return [ApiKeyOut(**asdict(key)) for key in await _keys(request).list_keys(admin.tenant)]


@router.delete(
    "/{key_id}", status_code=204, responses={404: {"description": "No such live key"}}, dependencies=[IDEMPOTENT]
)
async def revoke_api_key(key_id: str, admin: Admin, request: Request) -> Response:
    """Revoke a key: refused at once by this gateway replica, by the others within ``HERALD_AUTH_CACHE_TTL_S``."""
    key_hash = await _keys(request).revoke_by_id(admin.tenant, key_id)
    if key_hash is None:
        raise Problem(404, "Not found", f"no live API key {key_id}")
    authenticator: ApiKeyAuthenticator = request.app.state.authenticator
    authenticator.forget(key_hash)
    return Response(status_code=204)
