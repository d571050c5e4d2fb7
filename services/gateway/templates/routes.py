"""``/api/v1/templates``: the routes; checking and previewing are in :mod:`.service`."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Request, Response

from services.gateway.deps import KnownTemplatesDep, TemplatesDep
from services.gateway.http import pagination
from services.gateway.http.auth import Caller, Tenant
from services.gateway.http.idempotency import IDEMPOTENT
from services.gateway.http.pagination import Cursor, Limit
from services.gateway.http.problems import PROBLEM_RESPONSES, Problem
from services.gateway.templates import service
from services.gateway.templates.schemas import (
    PATH,
    PreviewIn,
    PreviewOut,
    TemplateCreate,
    TemplateId,
    TemplateOut,
    TemplatePage,
    TemplateSummary,
    TemplateUpdate,
    Version,
    VersionOut,
)

router = APIRouter(prefix=PATH, tags=["templates"], responses=PROBLEM_RESPONSES)
NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"description": "No such template or version (problem+json)"}}


@router.post(
    "",
    status_code=201,
    response_model=TemplateOut,
    responses={409: {"description": "A template with this id exists (problem+json)"}},
    dependencies=[IDEMPOTENT],
)
async def create_template(
    body: TemplateCreate, tenant: Tenant, caller: Caller, response: Response, templates: TemplatesDep
) -> TemplateOut:
    """Store a template as its version 1; 422 names a source that does not compile or uses an undeclared
    variable (`channels/email/html`). An id deleted before can be used again: its versions number on."""
    created = await templates.create(
        tenant,
        body.id,
        name=body.name,
        description=body.description,
        content=await service.checked_content(body),
        created_by=caller.author,
    )
    if created is None:
        raise Problem(409, "Conflict", f"template {body.id} exists; PUT {PATH}/{body.id} adds a version")
    response.headers["Location"] = f"{PATH}/{body.id}"
    return TemplateOut.of_version(*created)


@router.get("", response_model=TemplatePage)
async def list_templates(
    tenant: Tenant, request: Request, templates: TemplatesDep, limit: Limit = 50, cursor: Cursor = None
) -> TemplatePage:
    """The tenant's templates, newest first; follow `links.next` for the next page."""
    rows = await templates.page(tenant, limit + 1, pagination.after(cursor))
    shown, links = pagination.page(request, rows, limit)
    return TemplatePage(items=[TemplateSummary.of(row) for row in shown], links=links)


@router.get("/{template_id}", response_model=TemplateOut, responses=NOT_FOUND)
async def get_template(template_id: TemplateId, tenant: Tenant, templates: TemplatesDep) -> TemplateOut:
    """The template with its latest version."""
    found = await templates.get(tenant, template_id)
    if found is None:
        raise service.not_found(template_id)
    return TemplateOut.of_version(*found)


@router.put("/{template_id}", response_model=TemplateOut, responses=NOT_FOUND, dependencies=[IDEMPOTENT])
async def update_template(
    template_id: TemplateId, body: TemplateUpdate, tenant: Tenant, caller: Caller, templates: TemplatesDep
) -> TemplateOut:
    """Add a version, the one requests get from now on unless they pin another (versions never change)."""
    updated = await templates.add_version(
        tenant,
        template_id,
        name=body.name,
        description=body.description,
        content=await service.checked_content(body),
        created_by=caller.author,
    )
    if updated is None:
        raise service.not_found(template_id)
    return TemplateOut.of_version(*updated)


@router.get("/{template_id}/versions", response_model=list[VersionOut], responses=NOT_FOUND)
async def list_versions(template_id: TemplateId, tenant: Tenant, templates: TemplatesDep) -> list[VersionOut]:
    """Every version of the template, newest first (without content: GET one for it)."""
    versions = await templates.versions(tenant, template_id)
    if versions is None:
        raise service.not_found(template_id)
    return [VersionOut(**asdict(v), links={"self": f"{PATH}/{template_id}/versions/{v.version}"}) for v in versions]


@router.get("/{template_id}/versions/{version}", response_model=TemplateOut, responses=NOT_FOUND)
async def get_version(
    template_id: TemplateId, version: Version, tenant: Tenant, templates: TemplatesDep
) -> TemplateOut:
    """The template with one of its versions."""
    found = await templates.get(tenant, template_id, version)
    if found is None:
        raise service.not_found(template_id, version)
    return TemplateOut.of_version(*found)


@router.post("/{template_id}/preview", response_model=PreviewOut, responses=NOT_FOUND, dependencies=[IDEMPOTENT])
async def preview_template(
    template_id: TemplateId, body: PreviewIn, tenant: Tenant, templates: TemplatesDep
) -> PreviewOut:
    """Render a version for a channel as the router would: in the variant `locale` gets (answered as
    `locale`), html autoescaped (a variable holding `<script>` comes out as text), declared samples where
    `variables` gives no value; 422 names what fails to render."""
    found = await templates.get(tenant, template_id, body.version)
    if found is None:
        raise service.not_found(template_id, body.version)
    return await service.preview(template_id, found[1], body)


@router.delete("/{template_id}", status_code=204, responses=NOT_FOUND, dependencies=[IDEMPOTENT])
async def delete_template(
    template_id: TemplateId, tenant: Tenant, templates: TemplatesDep, known: KnownTemplatesDep
) -> Response:
    """Delete the template (soft: its versions are kept for the record). Requests naming it are refused
    from now on, and one already accepted fails when routed."""
    if not await templates.delete(tenant, template_id):
        raise service.not_found(template_id)
    known.forget(tenant, template_id)
    return Response(status_code=204)
