"""The sandboxed template renderer (variables, escaping, errors reported as InvalidRequest), the checks a
stored template passes before it is kept, and requests that name a stored template."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import InvalidRequest
from shared.messages import NotificationRequest
from shared.requests import build_request, validate_request
from shared.templates import TemplateRenderer, check_sources

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


# --- checking stored templates before they are kept -----------------------------------------------


def test_a_template_using_only_declared_variables_passes(renderer: TemplateRenderer) -> None:
    channels: dict[str, dict[str, str | None]] = {
        "email": {"subject": "Order {{ order }}", "text": "{% for i in items %}{{ i.name }}{% endfor %}", "html": None},
        "sms": {"text": "{{ order | upper }} shipped"},
    }
    check_sources(renderer, channels, {"order", "items"})


@pytest.mark.parametrize(
    ("channels", "field", "detail"),
    [
        pytest.param({"email": {"subject": "Hi", "html": "<p>{{ name </p>"}}, "channels/email/html", "template error"),
        pytest.param({"push": {"text": "{{ name | no_such_filter }}"}}, "channels/push/text", "no_such_filter"),
        pytest.param({"sms": {"text": "Hi {{ name }} {{ code }}"}}, "channels/sms/text", "(code)"),
        pytest.param({"webhook": {"subject": "{{ who.name }}"}}, "channels/webhook/subject", "(who)"),
    ],
)
def test_a_source_that_does_not_compile_or_uses_undeclared_variables_is_named(
    renderer: TemplateRenderer, channels: dict[str, dict[str, str | None]], field: str, detail: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_sources(renderer, channels, {"name"})
    assert caught.value.field == field
    assert detail in caught.value.detail


# --- requests naming a stored template ------------------------------------------------------------


def templated_request(channels: list[str], template: dict[str, Any], **content: str) -> NotificationRequest:
    return build_request(
        tenant_id="acme",
        channels=channels,
        recipient={"email": "ada@example.com", "phone": "+442079460958", "user_id": "u-1"},
        content={"template": template, **content},
        variables={"name": "Ada"},
    )


def test_a_request_with_a_template_needs_no_inline_content() -> None:
    request = templated_request(["email", "sms", "push"], {"id": "order-shipped", "version": 3})
    validate_request(request)
    assert request["content"]["template"] == {"id": "order-shipped", "version": 3}
    assert (request["content"]["subject"], request["content"]["text"]) == (None, None)


@pytest.mark.parametrize(
    ("template", "content", "field"),
    [
        pytest.param({"id": "no spaces"}, {}, "content/template/id", id="bad-id"),
        pytest.param({"id": "welcome\n"}, {}, "content/template/id", id="trailing-newline"),
        pytest.param({"id": "welcome", "version": 0}, {}, "content/template/version", id="version-0"),
        pytest.param({"id": "welcome"}, {"subject": "Hi"}, "content/template", id="inline-too"),
    ],
)
def test_an_invalid_template_reference_is_refused(
    template: dict[str, Any], content: dict[str, str], field: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_request(templated_request(["email"], template, **content))
    assert caught.value.field == field
