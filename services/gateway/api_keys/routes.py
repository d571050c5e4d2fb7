"""``/api/v1/api-keys``: API-key management (admins only): create a key (its secret answered once), list, revoke."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Response

from services.gateway.api_keys import service
from services.gateway.api_keys.schemas import PATH, ApiKeyCreate, ApiKeyCreated, ApiKeyOut
from services.gateway.deps import ApiKeysDep, AuthenticatorDep, SettingsDep
from services.gateway.http.auth import Admin
from services.gateway.http.idempotency import IDEMPOTENT
from services.gateway.http.problems import PROBLEM_RESPONSES, Problem

router = APIRouter(prefix=PATH, tags=["api keys"], responses=PROBLEM_RESPONSES)


@router.post("", status_code=201, response_model=ApiKeyCreated, dependencies=[IDEMPOTENT])
async def create_api_key(body: ApiKeyCreate, admin: Admin, keys: ApiKeysDep, settings: SettingsDep) -> ApiKeyCreated:
    """Create a key (``service``: a service account). Its secret is in this answer only; a replay of the
    same ``Idempotency-Key`` answers it again, within the idempotency window."""
    created, secret = await service.create(
        keys, env=settings.api_key_env, tenant_id=admin.tenant, name=body.name, role=body.role, scopes=body.scopes
    )
    return ApiKeyCreated(**asdict(created), secret=secret)


@router.get("", response_model=list[ApiKeyOut])
async def list_api_keys(admin: Admin, keys: ApiKeysDep) -> list[ApiKeyOut]:
    """The tenant's keys, revoked ones included, newest first; never their secrets."""
    return [ApiKeyOut(**asdict(key)) for key in await keys.list_keys(admin.tenant)]


@router.delete(
    "/{key_id}", status_code=204, responses={404: {"description": "No such live key"}}, dependencies=[IDEMPOTENT]
)
async def revoke_api_key(key_id: str, admin: Admin, keys: ApiKeysDep, authenticator: AuthenticatorDep) -> Response:
    """Revoke a key: refused at once by this gateway replica, by the others within ``HERALD_AUTH_CACHE_TTL_S``."""
    if not await service.revoke(keys, authenticator, tenant_id=admin.tenant, key_id=key_id):
        raise Problem(404, "Not found", f"no live API key {key_id}")
    return Response(status_code=204)
