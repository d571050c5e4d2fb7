"""Rendering notification content with Jinja2 in a sandbox, and checking stored templates before they are kept.

Templates come from API callers, so they run in a sandbox (:mod:`shared.template_sandbox`: no
attribute access to Python internals, and a bounded cost per render). HTML is autoescaped: a variable
holding ``<script>`` arrives as text.
Subjects and text bodies are not HTML and are rendered without escaping. A variable the template
uses but the request does not give is an error, not an empty string.

The router renders with :class:`TemplateRenderer`; the gateway uses the same one to preview a stored
template and, when one is created or updated, to check that its sources compile and use only the
variables it declares (:func:`check_sources`). A stored template may hold variants of its content per
locale; :func:`localised` picks the one a recipient's locale asks for.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, Template, TemplateError, meta

from shared.errors import InvalidRequest
from shared.template_sandbox import BoundedSandbox, RenderLimits, TemplateTooCostly

# A stored template's content: per channel, its fields (subject, text, html) as Jinja2 sources.
ChannelSources = Mapping[str, Mapping[str, str | None]]
# A BCP 47 language tag as the recipients API accepts one (``fr``, ``pt-BR``, ``zh_Hant_TW``).
LOCALE_PATTERN = r"^[A-Za-z]{2,8}([_-][A-Za-z0-9]{1,8})*$"


class TemplateRenderer:
    """Renders subject, text and html templates within :class:`RenderLimits`; compiled templates are
    cached by source."""

    def __init__(self, cache_size: int = 1024, limits: RenderLimits | None = None) -> None:
        limits = limits or RenderLimits()
        self._html = BoundedSandbox(limits, autoescape=True, undefined=StrictUndefined)
        self._plain = BoundedSandbox(limits, autoescape=False, undefined=StrictUndefined)
        self._compile_html = lru_cache(maxsize=cache_size)(self._html.from_string)
        self._compile_plain = lru_cache(maxsize=cache_size)(self._plain.from_string)
        # For trying a stored template's cost with whatever samples it declares: a missing one is empty.
        self._trial_html = BoundedSandbox(limits, autoescape=True, undefined=ChainableUndefined)
        self._trial_plain = BoundedSandbox(limits, autoescape=False, undefined=ChainableUndefined)

    def render(self, field: str, source: str, variables: Mapping[str, Any], *, html: bool = False) -> str:
        """Render one template; raises :class:`InvalidRequest` naming ``field`` if it cannot be rendered.

        Rendering is pure, so whatever goes wrong in it is the template's (or its variables') fault:
        a division by zero or a type error is as much an invalid request as a syntax error.
        """
        environment = self._html if html else self._plain
        try:
            with environment.budget():
                template: Template = (self._compile_html if html else self._compile_plain)(source)
                return environment.render_bounded(template, variables)
        except Exception as error:
            raise InvalidRequest(field, _describe(error)) from None

    def variables_of(self, field: str, source: str, *, html: bool = False) -> set[str]:
        """The variables ``source`` reads from its context; raises :class:`InvalidRequest` naming ``field``
        if it does not compile (a syntax error, an unknown filter or test, nesting too deep)."""
        environment = self._html if html else self._plain
        try:
            with environment.budget():
                tree = environment.parse(source)
                environment.compile(tree)
        except (TemplateError, RecursionError, MemoryError) as error:
            raise InvalidRequest(field, _describe(error)) from None
        return meta.find_undeclared_variables(tree)

    def check_cost(self, field: str, source: str, samples: Mapping[str, Any], *, html: bool = False) -> None:
        """Render ``source`` once with ``samples`` (a missing variable is empty); raise :class:`InvalidRequest`
        naming ``field`` if that goes over the render limits, so a template that could never be sent
        within them is refused when it is stored. Other errors are not the template's yet: they may
        come from a variable without a sample."""
        environment = self._trial_html if html else self._trial_plain
        try:
            with environment.budget():
                environment.render_bounded(environment.from_string(source), samples)
        except (TemplateTooCostly, RecursionError, MemoryError) as error:
            raise InvalidRequest(field, _describe(error)) from None
        except Exception:  # see the docstring: left to the preview and the router
            return


# How much of an error's message a reason quotes: the message of a failed format can hold the template's text.
_MAX_DETAIL_CHARS = 300


def _describe(error: BaseException) -> str:
    if isinstance(error, TemplateTooCostly):
        return f"template too costly: {error}"
    if isinstance(error, TemplateError):
        message = str(error)
    elif isinstance(error, RecursionError):
        message = "nested too deeply"
    else:
        message = f"{type(error).__name__}: {error}"
    return f"template error: {message[:_MAX_DETAIL_CHARS]}"


def check_sources(
    renderer: TemplateRenderer,
    channels: ChannelSources,
    declared: Collection[str],
    *,
    samples: Mapping[str, Any] | None = None,
    at: str = "channels",
) -> None:
    """Raise :class:`InvalidRequest` naming the first source (``<at>/<channel>/<field>``) that does not
    compile, uses a variable not in ``declared``, or goes over the render limits with ``samples``."""
    for channel, fields in channels.items():
        for name, source in fields.items():
            if source is None:
                continue
            field = f"{at}/{channel}/{name}"
            html = name == "html"
            undeclared = renderer.variables_of(field, source, html=html) - set(declared)
            if undeclared:
                names = ", ".join(sorted(undeclared))
                raise InvalidRequest(field, f"uses undeclared variables ({names}): declare them in variables")
            renderer.check_cost(field, source, samples or {}, html=html)


def canonical_tag(tag: str) -> str:
    """``tag`` (matching :data:`LOCALE_PATTERN`) in BCP 47's conventional case and with hyphens:
    ``pt_br`` is ``pt-BR``, ``ZH-HANT-tw`` is ``zh-Hant-TW``; extensions (after a one-letter subtag) stay
    lower case."""
    language, *rest = re.split("[-_]", tag.lower())
    subtags = [language]
    extension = False
    for subtag in rest:
        extension = extension or len(subtag) == 1
        if not extension and len(subtag) == 2:
            subtag = subtag.upper()  # a region
        elif not extension and len(subtag) == 4 and subtag.isalpha():
            subtag = subtag.title()  # a script
        subtags.append(subtag)
    return "-".join(subtags)


def _lookup(locale: str) -> list[str]:
    """The tags to try for ``locale``, most specific first, lower case (RFC 4647 lookup): ``fr-ca``, then
    ``fr``; a one-letter subtag never ends one, as it means nothing without what follows it."""
    subtags = re.split("[-_]", locale.lower())
    tags = []
    while subtags:
        tags.append("-".join(subtags))
        subtags.pop()
        while len(subtags) > 1 and len(subtags[-1]) == 1:
            subtags.pop()
    return tags


def localised(
    channels: ChannelSources, locales: Mapping[str, ChannelSources], locale: str | None, channel: str
) -> tuple[str | None, Mapping[str, str | None]] | None:
    """The sources to render for ``channel`` to a recipient of ``locale``, with the tag of the variant in
    ``locales`` they come from (None: the default ``channels``); None if nothing has ``channel`` content.

    For ``fr-CA`` the variant ``fr-CA`` is used, else ``fr``, else the default; one without content for
    ``channel`` gives way to the next. Tags match whatever their case, ``_`` standing for ``-``."""
    by_tag = {tag.lower().replace("_", "-"): tag for tag in locales}
    for wanted in _lookup(locale) if locale else ():
        tag = by_tag.get(wanted)
        if tag is not None and (sources := locales[tag].get(channel)) is not None:
            return tag, sources
    sources = channels.get(channel)
    return None if sources is None else (None, sources)
