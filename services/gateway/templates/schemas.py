"""The templates API's request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, Field, StringConstraints, field_validator, model_validator

from services.gateway.http.pagination import PageLinks
from services.gateway.http.schemas import Body, Channel
from shared.requests import MAX_TEMPLATE_VERSION
from shared.storage.templates import Template, TemplateVersion
from shared.templates import LOCALE_PATTERN, canonical_tag

PATH = "/api/v1/templates"
TemplateId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="The template's id in your tenant.")]
Version = Annotated[int, Path(ge=1, le=MAX_TEMPLATE_VERSION)]
VariableName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
LocaleTag = Annotated[str, StringConstraints(max_length=35, pattern=LOCALE_PATTERN)]
# Per channel the field sources, as stored and answered.
Sources = dict[str, dict[str, str | None]]


# Each channel has the fields the router renders for it, named as in a request's inline content.
class EmailIn(Body):
    subject: str = Field(min_length=1, max_length=998)
    text: str | None = Field(default=None, max_length=200_000)
    html: str | None = Field(default=None, max_length=500_000, description="Autoescaped when rendered.")

    @model_validator(mode="after")
    def _has_a_body(self) -> EmailIn:
        if not self.text and not self.html:
            raise ValueError("give a text or an html body")
        return self


class SmsIn(Body):
    text: str = Field(min_length=1, max_length=1_600)


class PushIn(Body):
    subject: str | None = Field(default=None, max_length=998, description="The notification's title.")
    text: str = Field(min_length=1, max_length=4_000, description="The notification's body.")


class WebhookIn(Body):
    subject: str | None = Field(default=None, max_length=998)
    text: str | None = Field(default=None, max_length=200_000)
    html: str | None = Field(default=None, max_length=500_000, description="Autoescaped when rendered.")

    @model_validator(mode="after")
    def _has_content(self) -> WebhookIn:
        if not (self.subject or self.text or self.html):
            raise ValueError("give a subject, a text or an html")
        return self


class ChannelsIn(Body):
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


class VariableIn(Body):
    description: str | None = Field(default=None, max_length=500)
    sample: Any = Field(default=None, description="Used by a preview when it is given no value.")


class TemplateUpdate(Body):
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

    @classmethod
    def of(cls, template: Template) -> TemplateSummary:
        return cls(
            id=template.template_id,
            name=template.name,
            description=template.description,
            latest_version=template.latest_version,
            created_at=template.created_at,
            updated_at=template.updated_at,
            links=TemplateLinks(
                self=f"{PATH}/{template.template_id}", versions=f"{PATH}/{template.template_id}/versions"
            ),
        )


class TemplateOut(TemplateSummary):
    """A template with one of its versions (the latest unless one was asked for)."""

    version: int
    channels: Sources
    locales: dict[str, Sources] = Field(description="Variants of `channels` per BCP 47 tag.")
    variables: dict[str, dict[str, Any]]
    version_created_at: datetime
    version_created_by: str = Field(description="api_key:<key id> or jwt:<subject>")

    @classmethod
    def of_version(cls, template: Template, version: TemplateVersion) -> TemplateOut:
        return cls(
            **TemplateSummary.of(template).model_dump(),
            version=version.version,
            channels=version.channels,
            locales=version.locales,
            variables=version.variables,
            version_created_at=version.created_at,
            version_created_by=version.created_by,
        )


class TemplatePage(BaseModel):
    items: list[TemplateSummary]
    links: PageLinks


class VersionOut(BaseModel):
    version: int
    created_at: datetime
    created_by: str
    links: dict[str, str]


class PreviewIn(Body):
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
