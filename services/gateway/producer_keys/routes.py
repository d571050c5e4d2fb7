"""``/api/v1/producer-keys``: producer-key management (admins only): create a key (its credential
answered), list, revoke. A revoked key's requests are dead-lettered by ingest within
``HERALD_PRODUCER_KEYS_CACHE_S``."""

from __future__ import annotations

from fastapi import APIRouter, Response

from services.gateway.deps import ProducerKeysDep, SettingsDep
from services.gateway.http.auth import Admin
from services.gateway.http.idempotency import IDEMPOTENT
from services.gateway.http.problems import PROBLEM_RESPONSES, Problem
from services.gateway.producer_keys.schemas import PATH, ProducerKeyCreate, ProducerKeyCreated, ProducerKeyOut
from shared.producer_keys import ProducerKey

router = APIRouter(
    prefix=PATH,
    tags=["producer keys"],
    responses={
        **PROBLEM_RESPONSES,
        503: {"description": "Request signing is not configured: HERALD_PRODUCER_SIGNING_KEY (problem+json)"},
    },
)


@router.post("", status_code=201, response_model=ProducerKeyCreated, dependencies=[IDEMPOTENT])
async def create_producer_key(
    body: ProducerKeyCreate, admin: Admin, keys: ProducerKeysDep, settings: SettingsDep
) -> ProducerKeyCreated:
    """Create a key for producing this tenant's requests straight to Kafka; the answer holds its credential."""
    master_key = settings.request_signing_key()
    if master_key is None:
        raise Problem(503, "Service unavailable", "request signing is not configured (HERALD_PRODUCER_SIGNING_KEY)")
    created = await keys.create(admin.tenant, body.name)
    credential = ProducerKey.derive(master_key, admin.tenant, created.id).credential()
    return ProducerKeyCreated(
        id=created.id, name=created.name, created_at=created.created_at, revoked_at=None, credential=credential
    )


@router.get("", response_model=list[ProducerKeyOut])
async def list_producer_keys(admin: Admin, keys: ProducerKeysDep) -> list[ProducerKeyOut]:
    """The tenant's producer keys, revoked ones included, newest first; never their credentials."""
    return [ProducerKeyOut.model_validate(key, from_attributes=True) for key in await keys.list_keys(admin.tenant)]


@router.delete(
    "/{key_id}", status_code=204, responses={404: {"description": "No such live key"}}, dependencies=[IDEMPOTENT]
)
async def revoke_producer_key(key_id: str, admin: Admin, keys: ProducerKeysDep) -> Response:
    """Revoke a key: ingest refuses its requests within ``HERALD_PRODUCER_KEYS_CACHE_S`` (30 s by default)."""
    if not await keys.revoke(admin.tenant, key_id):
        raise Problem(404, "Not found", f"no live producer key {key_id}")
    return Response(status_code=204)
