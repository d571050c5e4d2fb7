"""Rendering notification content with Jinja2 in a sandbox, and checking stored templates before they are kept.

Templates come from API callers, so they run in Jinja2's :class:`SandboxedEnvironment` (no attribute
access to Python internals). HTML is autoescaped: a variable holding ``<script>`` arrives as text.
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

from jinja2 import StrictUndefined, Template, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment

from shared.errors import InvalidRequest

# A stored template's content: per channel, its fields (subject, text, html) as Jinja2 sources.
ChannelSources = Mapping[str, Mapping[str, str | None]]
# A BCP 47 language tag as the recipients API accepts one (``fr``, ``pt-BR``, ``zh_Hant_TW``).
LOCALE_PATTERN = r"^[A-Za-z]{2,8}([_-][A-Za-z0-9]{1,8})*$"


class TemplateRenderer:
    """Renders subject, text and html templates; compiled templates are cached by source."""

    def __init__(self, cache_size: int = 1024) -> None:
        self._html = SandboxedEnvironment(autoescape=True, undefined=StrictUndefined)
        self._plain = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined)
        self._compile_html = lru_cache(maxsize=cache_size)(self._html.from_string)
        self._compile_plain = lru_cache(maxsize=cache_size)(self._plain.from_string)

    def render(self, field: str, source: str, variables: Mapping[str, Any], *, html: bool = False) -> str:
        """Render one template; raises :class:`InvalidRequest` naming ``field`` if it cannot be rendered."""
        try:
            template: Template = (self._compile_html if html else self._compile_plain)(source)
            return template.render(variables)
        except TemplateError as error:
            raise InvalidRequest(field, f"template error: {error}") from None

    def variables_of(self, field: str, source: str, *, html: bool = False) -> set[str]:
        """The variables ``source`` reads from its context; raises :class:`InvalidRequest` naming ``field``
        if it does not compile (a syntax error, an unknown filter or test)."""
        environment = self._html if html else self._plain
        try:
            tree = environment.parse(source)
            environment.compile(tree)
        except TemplateError as error:
            raise InvalidRequest(field, f"template error: {error}") from None
        return meta.find_undeclared_variables(tree)


def check_sources(
    renderer: TemplateRenderer, channels: ChannelSources, declared: Collection[str], *, at: str = "channels"
) -> None:
    """Raise :class:`InvalidRequest` naming the first source (``<at>/<channel>/<field>``) that does not
    compile or uses a variable not in ``declared``."""
    for channel, fields in channels.items():
        for name, source in fields.items():
            if source is None:
                continue
            field = f"{at}/{channel}/{name}"
            undeclared = renderer.variables_of(field, source, html=name == "html") - set(declared)
            if undeclared:
                names = ", ".join(sorted(undeclared))
                raise InvalidRequest(field, f"uses undeclared variables ({names}): declare them in variables")


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
