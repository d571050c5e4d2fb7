"""Templates: checking and previewing a version's sources, and which stored templates exist."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

from services.gateway.http.problems import Problem
from services.gateway.templates.schemas import PATH, PreviewIn, PreviewOut, Sources, TemplateUpdate
from shared.errors import InvalidRequest
from shared.messages import NotificationRequest
from shared.storage.templates import TemplateRef, TemplateRepository, TemplateVersion, VersionContent
from shared.templates import TemplateRenderer, check_sources, localised

# How long a template found to exist is trusted by the notification routes without asking Postgres again.
KNOWN_TTL_S = 5.0
_MAX_KNOWN = 10_000
# Compiles only what is checked or previewed here; the router has its own.
_RENDERER = TemplateRenderer(cache_size=256)


def version_content(body: TemplateUpdate) -> VersionContent:
    """The version ``body`` describes, once its sources (the variants' too) compile and use only
    declared variables, and each variant is of channels the default content has."""
    channels = body.channels.model_dump(exclude_none=True)
    samples = {name: variable.sample for name, variable in body.variables.items() if variable.sample is not None}
    check_sources(_RENDERER, channels, body.variables, samples=samples)
    locales: dict[str, Sources] = {}
    for tag, variant in body.locales.items():
        locales[tag] = variant.model_dump(exclude_none=True)
        # The gateway refuses a request by the default channels alone: a variant only varies them.
        if extra := sorted(locales[tag].keys() - channels.keys()):
            detail = f"channels has no {extra[0]} content: a locale only varies the channels given there"
            raise InvalidRequest(f"locales/{tag}/{extra[0]}", detail)
        check_sources(_RENDERER, locales[tag], body.variables, samples=samples, at=f"locales/{tag}")
    variables = {name: v.model_dump(exclude_none=True) for name, v in body.variables.items()}
    return VersionContent(channels, variables, locales)


async def checked_content(body: TemplateUpdate) -> VersionContent:
    """:func:`version_content` off the event loop: compiling and trying the sources is CPU work bounded by
    the render limits, and /health and every other request keep their latency meanwhile."""
    return await asyncio.to_thread(version_content, body)


def not_found(template_id: str, version: int | None = None) -> Problem:
    """The 404 of a template, or of one of its versions."""
    what = f"template {template_id}" if version is None else f"version {version} of template {template_id}"
    return Problem(404, "Not found", f"no {what}")


async def preview(template_id: str, version: TemplateVersion, body: PreviewIn) -> PreviewOut:
    """``version`` rendered for ``body.channel`` as the router would (see the preview route)."""
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


def _render_all(
    at: str, channel: str, sources: Mapping[str, str | None], variables: Mapping[str, Any]
) -> dict[str, str]:
    """Each of a channel's sources rendered (in a worker thread, as :func:`checked_content`)."""
    return {
        name: _RENDERER.render(f"{at}/{channel}/{name}", source, variables, html=name == "html")
        for name, source in sources.items()
        if source is not None
    }


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
