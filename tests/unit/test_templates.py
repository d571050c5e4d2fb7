"""The sandboxed template renderer: variables, escaping, and errors reported as InvalidRequest."""

from __future__ import annotations

import pytest

from services.router.templates import TemplateRenderer
from shared.errors import InvalidRequest

pytestmark = pytest.mark.unit

XSS = "<script>alert(1)</script>"


@pytest.fixture
def renderer() -> TemplateRenderer:
    return TemplateRenderer(cache_size=16)


def test_renders_variables(renderer: TemplateRenderer) -> None:
    result = renderer.render("content/text", "Hi {{ name }}, you have {{ count }} new", {"name": "Ada", "count": 3})
    assert result == "Hi Ada, you have 3 new"


def test_html_autoescapes_variables(renderer: TemplateRenderer) -> None:
    result = renderer.render("content/html", "<p>{{ comment }}</p>", {"comment": XSS}, html=True)
    assert result == "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"


def test_plain_text_is_not_escaped(renderer: TemplateRenderer) -> None:
    result = renderer.render("content/text", "Said: {{ comment }}", {"comment": XSS})
    assert result == f"Said: {XSS}"


def test_same_source_renders_per_mode(renderer: TemplateRenderer) -> None:
    """The compiled-template cache must not hand the html template to a plain render, or back."""
    source = "{{ comment }}"
    assert renderer.render("content/html", source, {"comment": "<b>"}, html=True) == "&lt;b&gt;"
    assert renderer.render("content/text", source, {"comment": "<b>"}) == "<b>"


def test_missing_variable_raises_naming_the_field(renderer: TemplateRenderer) -> None:
    with pytest.raises(InvalidRequest, match="name") as caught:
        renderer.render("content/subject", "Hello {{ name }}", {})
    assert caught.value.field == "content/subject"


def test_syntax_error_raises(renderer: TemplateRenderer) -> None:
    with pytest.raises(InvalidRequest) as caught:
        renderer.render("content/text", "Hello {{ name ", {"name": "Ada"})
    assert caught.value.field == "content/text"
    assert "template error" in caught.value.detail


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ name.__init__.__globals__ }}",
    ],
)
def test_sandbox_blocks_python_internals(renderer: TemplateRenderer, source: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        renderer.render("content/html", source, {"name": "Ada"}, html=True)
    assert caught.value.field == "content/html"
