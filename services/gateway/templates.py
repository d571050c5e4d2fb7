"""``/api/v1/templates``: stored, versioned notification templates, per channel, with declared variables.

A request names one as ``content.template`` (``id``, and ``version`` to pin one); the router renders the
version's content for the channel it chooses, in the variant of ``locales`` that best matches the
recipient's locale (:func:`shared.templates.localised`). Creating or updating a template checks that
every source compiles, uses only declared variables and renders within the render limits with its
samples; updating adds a version (versions never change); deleting is soft. :class:`KnownTemplates`
is how the notification routes refuse a request naming no template.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from services.gateway import pages
from services.gateway.auth import Principal, Tenant, authenticated_principal
from services.gateway.idempotency import IDEMPOTENT
from services.gateway.pages import Cursor, Limit, PageLinks
from services.gateway.problems import PROBLEM_RESPONSES, Problem
from services.gateway.schemas import Channel
from shared.errors import InvalidRequest
from shared.messages import NotificationRequest
from shared.requests import MAX_TEMPLATE_VERSION
from shared.storage.templates import Template, TemplateRef, TemplateRepository, TemplateVersion, VersionContent
from shared.templates import LOCALE_PATTERN, TemplateRenderer, canonical_tag, check_sources, localised

PATH = "/api/v1/templates"
router = APIRouter(prefix=PATH, tags=["templates"], responses=PROBLEM_RESPONSES)
NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"description": "No such template or version (problem+json)"}}
TemplateId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="The template's id in your tenant.")]
Version = Annotated[int, Path(ge=1, le=MAX_TEMPLATE_VERSION)]
VariableName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
LocaleTag = Annotated[str, StringConstraints(max_length=35, pattern=LOCALE_PATTERN)]
# Per channel the field sources, as stored and answered.
Sources = dict[str, dict[str, str | None]]
# How long a template found to exist is trusted by the notification routes without asking Postgres again.
KNOWN_TTL_S = 5.0
_MAX_KNOWN = 10_000
# Compiles only what is checked or previewed here; the router has its own.
_RENDERER = TemplateRenderer(cache_size=256)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Each channel has the fields the router renders for it, named as in a request's inline content.
class EmailIn(_Body):
    subject: str = Field(min_length=1, max_length=998)
    text: str | None = Field(default=None, max_length=200_000)
    html: str | None = Field(default=None, max_length=500_000, description="Autoescaped when rendered.")

    @model_validator(mode="after")
    def _has_a_body(self) -> EmailIn:
        if not self.text and not self.html:
            raise ValueError("give a text or an html body")
        return self


class SmsIn(_Body):
    text: str = Field(min_length=1, max_length=1_600)


class PushIn(_Body):
    subject: str | None = Field(default=None, max_length=998, description="The notification's title.")
    text: str = Field(min_length=1, max_length=4_000, description="The notification's body.")


class WebhookIn(_Body):
    subject: str | None = Field(default=None, max_length=998)
    text: str | None = Field(default=None, max_length=200_000)
    html: str | None = Field(default=None, max_length=500_000, description="Autoescaped when rendered.")

    @model_validator(mode="after")
    def _has_content(self) -> WebhookIn:
        if not (self.subject or self.text or self.html):
            raise ValueError("give a subject, a text or an html")
        return self


class ChannelsIn(_Body):
    """The content per channel (Jinja2); a notification routed to a channel the template lacks fails."""

    email: EmailIn | None = None
    sms: SmsIn | None = None
    push: PushIn | None = None
    webhook: WebhookIn | None = None

    @model_validator(mode="after")
    def _has_a_channel(self) -> ChannelsIn:
        if not (self.email or self.sms or self.push or self.webhook):
            raise ValueError("give the content of at least one channel")
        return self


class VariableIn(_Body):
    description: str | None = Field(default=None, max_length=500)
    sample: Any = Field(default=None, description="Used by a preview when it is given no value.")


class TemplateUpdate(_Body):
    name: str = Field(min_length=1, max_length=200, examples=["Order shipped"])
    description: str | None = Field(default=None, max_length=2_000)
    channels: ChannelsIn
    locales: dict[LocaleTag, ChannelsIn] = Field(
        default_factory=dict,
        max_length=50,
        description="Per BCP 47 tag (`fr`, `pt-BR`), variants of `channels` for recipients of that locale: "
        "`fr-CA` gets `fr-CA`, else `fr`, else `channels`, per channel. Tags are stored in canonical case.",
        examples=[{"fr": {"sms": {"text": "Bonjour {{ name }}, commande {{ order }} expédiée."}}}],
    )
    variables: dict[VariableName, VariableIn] = Field(
        default_factory=dict, max_length=100, description="Every variable the sources use, by name."
    )

    @field_validator("locales")
    @classmethod
    def _canonical_tags(cls, locales: dict[str, ChannelsIn]) -> dict[str, ChannelsIn]:
        canonical = {canonical_tag(tag): variant for tag, variant in locales.items()}
        if len(canonical) < len(locales):
            raise ValueError("two tags name the same locale (tags are not case-sensitive)")
        return canonical

    def content(self) -> VersionContent:
        """The version this body describes, once its sources (the variants' too) compile and use only
        declared variables, and each variant is of channels the default content has."""
        channels = self.channels.model_dump(exclude_none=True)
        samples = {name: variable.sample for name, variable in self.variables.items() if variable.sample is not None}
        check_sources(_RENDERER, channels, self.variables, samples=samples)
        locales: dict[str, Sources] = {}
        for tag, variant in self.locales.items():
            locales[tag] = variant.model_dump(exclude_none=True)
            # The gateway refuses a request by the default channels alone: a variant only varies them.
            if extra := sorted(locales[tag].keys() - channels.keys()):
                detail = f"channels has no {extra[0]} content: a locale only varies the channels given there"
                raise InvalidRequest(f"locales/{tag}/{extra[0]}", detail)
            check_sources(_RENDERER, locales[tag], self.variables, samples=samples, at=f"locales/{tag}")
        variables = {name: v.model_dump(exclude_none=True) for name, v in self.variables.items()}
        return VersionContent(channels, variables, locales)


class TemplateCreate(TemplateUpdate):
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", examples=["order-shipped"], description="Yours to choose.")


class TemplateLinks(BaseModel):
    self: str
    versions: str


class TemplateSummary(BaseModel):
    id: str
    name: str
    description: str | None
    latest_version: int
    created_at: datetime
    updated_at: datetime
    links: TemplateLinks


class TemplateOut(TemplateSummary):
    """A template with one of its versions (the latest unless one was asked for)."""

    version: int
    channels: Sources
    locales: dict[str, Sources] = Field(description="Variants of `channels` per BCP 47 tag.")
    variables: dict[str, dict[str, Any]]
    version_created_at: datetime
    version_created_by: str = Field(description="api_key:<key id> or jwt:<subject>")


class TemplatePage(BaseModel):
    items: list[TemplateSummary]
    links: PageLinks


class VersionOut(BaseModel):
    version: int
    created_at: datetime
    created_by: str
    links: dict[str, str]


class PreviewIn(_Body):
    channel: Channel
    version: int | None = Field(default=None, ge=1, le=MAX_TEMPLATE_VERSION, description="Default: the latest.")
    variables: dict[str, Any] = Field(default_factory=dict, description="Over the declared samples.")
    locale: LocaleTag | None = Field(
        default=None, examples=["fr-CA"], description="The recipient's locale; default: none (`channels`)."
    )


class PreviewOut(BaseModel):
    id: str
    version: int
    channel: Channel
    locale: str | None = Field(description="The tag of the variant rendered; null: the default `channels`.")
    subject: str | None
    text: str | None
    html: str | None


async def _checked_content(body: TemplateUpdate) -> VersionContent:
    # Compiling and trying the sources is CPU work bounded by the render limits: off the event loop,
    # so /health and every other request keep their latency meanwhile.
    return await asyncio.to_thread(body.content)


def _render_all(
    at: str, channel: str, sources: Mapping[str, str | None], variables: Mapping[str, Any]
) -> dict[str, str]:
    """Each of a channel's sources rendered (in a worker thread: see :func:`_checked_content`)."""
    return {
        name: _RENDERER.render(f"{at}/{channel}/{name}", source, variables, html=name == "html")
        for name, source in sources.items()
        if source is not None
    }


def _links(template_id: str) -> TemplateLinks:
    return TemplateLinks(self=f"{PATH}/{template_id}", versions=f"{PATH}/{template_id}/versions")


def _summary(template: Template) -> TemplateSummary:
    return TemplateSummary(
        id=template.template_id,
        name=template.name,
        description=template.description,
        latest_version=template.latest_version,
        created_at=template.created_at,
        updated_at=template.updated_at,
        links=_links(template.template_id),
    )


def _out(found: tuple[Template, TemplateVersion]) -> TemplateOut:
    template, version = found
    return TemplateOut(
        **_summary(template).model_dump(),
        version=version.version,
        channels=version.channels,
        locales=version.locales,
        variables=version.variables,
        version_created_at=version.created_at,
        version_created_by=version.created_by,
    )


def _templates(request: Request) -> TemplateRepository:
    repository: TemplateRepository = request.app.state.templates
    return repository


def _known(request: Request) -> KnownTemplates:
    known: KnownTemplates = request.app.state.known_templates
    return known


def _not_found(template_id: str, version: int | None = None) -> Problem:
    what = f"template {template_id}" if version is None else f"version {version} of template {template_id}"
    return Problem(404, "Not found", f"no {what}")


Caller = Annotated[Principal, Depends(authenticated_principal)]


def _author(principal: Principal) -> str:
    return f"{principal.kind}:{principal.subject}"


@router.post(
    "",
    status_code=201,
    response_model=TemplateOut,
    responses={409: {"description": "A template with this id exists (problem+json)"}},
    dependencies=[IDEMPOTENT],
)
async def create_template(
    body: TemplateCreate, tenant: Tenant, caller: Caller, request: Request, response: Response
) -> TemplateOut:
    """Store a template as its version 1; 422 names a source that does not compile or uses an undeclared
    variable (`channels/email/html`). An id deleted before can be used again: its versions number on."""
    created = await _templates(request).create(
        tenant,
        body.id,
        name=body.name,
        description=body.description,
        content=await _checked_content(body),
        created_by=_author(caller),
    )
    if created is None:
        raise Problem(409, "Conflict", f"template {body.id} exists; PUT {PATH}/{body.id} adds a version")
    response.headers["Location"] = f"{PATH}/{body.id}"
    return _out(created)


@router.get("", response_model=TemplatePage)
async def list_templates(tenant: Tenant, request: Request, limit: Limit = 50, cursor: Cursor = None) -> TemplatePage:
    """The tenant's templates, newest first; follow `links.next` for the next page."""
    rows, links = pages.page(request, await _templates(request).page(tenant, limit + 1, pages.after(cursor)), limit)
    return TemplatePage(items=[_summary(row) for row in rows], links=links)


@router.get("/{template_id}", response_model=TemplateOut, responses=NOT_FOUND)
async def get_template(template_id: TemplateId, tenant: Tenant, request: Request) -> TemplateOut:
    """The template with its latest version."""
    found = await _templates(request).get(tenant, template_id)
    if found is None:
        raise _not_found(template_id)
    return _out(found)


@router.put("/{template_id}", response_model=TemplateOut, responses=NOT_FOUND, dependencies=[IDEMPOTENT])
async def update_template(
    template_id: TemplateId, body: TemplateUpdate, tenant: Tenant, caller: Caller, request: Request
) -> TemplateOut:
    """Add a version, the one requests get from now on unless they pin another (versions never change)."""
    updated = await _templates(request).add_version(
        tenant,
        template_id,
        name=body.name,
        description=body.description,
        content=await _checked_content(body),
        created_by=_author(caller),
    )
    if updated is None:
        raise _not_found(template_id)
    return _out(updated)


@router.get("/{template_id}/versions", response_model=list[VersionOut], responses=NOT_FOUND)
async def list_versions(template_id: TemplateId, tenant: Tenant, request: Request) -> list[VersionOut]:
    """Every version of the template, newest first (without content: GET one for it)."""
    versions = await _templates(request).versions(tenant, template_id)
    if versions is None:
        raise _not_found(template_id)
    return [VersionOut(**asdict(v), links={"self": f"{PATH}/{template_id}/versions/{v.version}"}) for v in versions]


@router.get("/{template_id}/versions/{version}", response_model=TemplateOut, responses=NOT_FOUND)
async def get_version(template_id: TemplateId, version: Version, tenant: Tenant, request: Request) -> TemplateOut:
    """The template with one of its versions."""
    found = await _templates(request).get(tenant, template_id, version)
    if found is None:
        raise _not_found(template_id, version)
    return _out(found)


@router.post("/{template_id}/preview", response_model=PreviewOut, responses=NOT_FOUND, dependencies=[IDEMPOTENT])
async def preview_template(template_id: TemplateId, body: PreviewIn, tenant: Tenant, request: Request) -> PreviewOut:
    """Render a version for a channel as the router would: in the variant `locale` gets (answered as
    `locale`), html autoescaped (a variable holding `<script>` comes out as text), declared samples where
    `variables` gives no value; 422 names what fails to render."""
    found = await _templates(request).get(tenant, template_id, body.version)
    if found is None:
        raise _not_found(template_id, body.version)
    version = found[1]
    chosen = localised(version.channels, version.locales, body.locale, body.channel)
    if chosen is None:
        detail = f"version {version.version} of template {template_id} has no {body.channel} content"
        raise Problem(422, "Invalid request", detail, errors=[{"pointer": "#/channel", "detail": detail}])
    tag, sources = chosen
    at = "channels" if tag is None else f"locales/{tag}"
    variables = {name: spec["sample"] for name, spec in version.variables.items() if "sample" in spec}
    variables.update(body.variables)
    rendered = await asyncio.to_thread(_render_all, at, body.channel, sources, variables)
    return PreviewOut(
        id=template_id,
        version=version.version,
        channel=body.channel,
        locale=tag,
        subject=rendered.get("subject"),
        text=rendered.get("text"),
        html=rendered.get("html"),
    )


@router.delete("/{template_id}", status_code=204, responses=NOT_FOUND, dependencies=[IDEMPOTENT])
async def delete_template(template_id: TemplateId, tenant: Tenant, request: Request) -> Response:
    """Delete the template (soft: its versions are kept for the record). Requests naming it are refused
    from now on, and one already accepted fails when routed."""
    if not await _templates(request).delete(tenant, template_id):
        raise _not_found(template_id)
    _known(request).forget(tenant, template_id)
    return Response(status_code=204)


class KnownTemplates:
    """Which stored templates exist, for the notification routes: one query per request (or bulk) for the
    ones not seen lately; one found is trusted ``ttl_s`` (a delete through another gateway replica shows
    here after that; the router refuses such a notification anyway)."""

    def __init__(self, repository: TemplateRepository, ttl_s: float = KNOWN_TTL_S) -> None:
        self._repository = repository
        self._ttl_s = ttl_s
        # What each reference named when it was looked up, trusted until the time beside it.
        self._found: dict[TemplateRef, tuple[TemplateVersion, float]] = {}

    async def refusals(self, requests: Sequence[NotificationRequest]) -> dict[int, InvalidRequest]:
        """By position in ``requests``, why each one naming a template is refused: the template does not
        exist, or has content for none of the request's channels (it could never be sent)."""
        refs = {
            position: (request["tenant_id"], template["id"], template["version"])
            for position, request in enumerate(requests)
            if (template := request["content"]["template"]) is not None
        }
        now = time.monotonic()
        unseen = {ref for ref in refs.values() if ref not in self._found or self._found[ref][1] <= now}
        if unseen:
            found = await self._repository.versions_for(unseen)
            if len(self._found) > _MAX_KNOWN:
                self._found = {ref: known for ref, known in self._found.items() if known[1] > now}
            self._found.update((ref, (version, now + self._ttl_s)) for ref, version in found.items())
        refused: dict[int, InvalidRequest] = {}
        for position, ref in refs.items():
            known = self._found.get(ref)
            if known is None or known[1] <= now:  # not found, or only an expired entry of before
                refused[position] = _unknown(ref)
            elif not set(requests[position]["channels"]) & known[0].channels.keys():
                refused[position] = _no_content(known[0], requests[position]["channels"])
        return refused

    async def check(self, request: NotificationRequest) -> None:
        """Raise :class:`InvalidRequest` if ``request`` names a template that does not exist."""
        for refusal in (await self.refusals([request])).values():
            raise refusal

    def forget(self, tenant_id: str, template_id: str) -> None:
        """Stop trusting a template this gateway just deleted."""
        self._found = {ref: known for ref, known in self._found.items() if ref[:2] != (tenant_id, template_id)}


def _no_content(version: TemplateVersion, channels: Sequence[str]) -> InvalidRequest:
    has = ", ".join(sorted(version.channels))
    wanted = ", ".join(channels)
    detail = f"version {version.version} of template {version.template_id!r} has content for {has}, none of {wanted}"
    return InvalidRequest("channels", detail)


def _unknown(ref: TemplateRef) -> InvalidRequest:
    _, template_id, version = ref
    what = f"template {template_id!r}" if version is None else f"version {version} of template {template_id!r}"
    return InvalidRequest("content/template/id", f"no {what} (see {PATH})")
