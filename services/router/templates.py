"""Rendering notification content with Jinja2 in a sandbox.

Templates come from API callers, so they run in Jinja2's :class:`SandboxedEnvironment` (no attribute
access to Python internals). HTML is autoescaped: a variable holding ``<script>`` arrives as text.
Subjects and text bodies are not HTML and are rendered without escaping. A variable the template
uses but the request does not give is an error, not an empty string.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from shared.errors import InvalidRequest


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
