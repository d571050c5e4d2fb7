"""Rendering notification content with Jinja2 in a sandbox, and checking stored templates before they are kept.

Templates come from API callers, so they run in Jinja2's :class:`SandboxedEnvironment` (no attribute
access to Python internals). HTML is autoescaped: a variable holding ``<script>`` arrives as text.
Subjects and text bodies are not HTML and are rendered without escaping. A variable the template
uses but the request does not give is an error, not an empty string.

The router renders with :class:`TemplateRenderer`; the gateway uses the same one to preview a stored
template and, when one is created or updated, to check that its sources compile and use only the
variables it declares (:func:`check_sources`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment

from shared.errors import InvalidRequest

# A stored template's content: per channel, its fields (subject, text, html) as Jinja2 sources.
ChannelSources = Mapping[str, Mapping[str, str | None]]


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


def check_sources(renderer: TemplateRenderer, channels: ChannelSources, declared: Collection[str]) -> None:
    """Raise :class:`InvalidRequest` naming the first source (``channels/<channel>/<field>``) that does not
    compile or uses a variable not in ``declared``."""
    for channel, fields in channels.items():
        for name, source in fields.items():
            if source is None:
                continue
            field = f"channels/{channel}/{name}"
            undeclared = renderer.variables_of(field, source, html=name == "html") - set(declared)
            if undeclared:
                names = ", ".join(sorted(undeclared))
                raise InvalidRequest(field, f"uses undeclared variables ({names}): declare them in variables")
