"""The sandboxed template renderer (variables, escaping, errors reported as InvalidRequest), the checks a
stored template passes before it is kept, and requests that name a stored template."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import InvalidRequest
from shared.messages import NotificationRequest
from shared.requests import build_request, validate_request
from shared.templates import ChannelSources, TemplateRenderer, canonical_tag, check_sources, localised

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


def test_a_locale_variant_is_named_under_its_tag(renderer: TemplateRenderer) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_sources(renderer, {"sms": {"text": "{{ code }}"}}, {"name"}, at="locales/fr")
    assert caught.value.field == "locales/fr/sms/text"


# --- choosing the variant for a recipient's locale ------------------------------------------------

DEFAULT: ChannelSources = {"email": {"subject": "Hello", "text": "Hi"}, "sms": {"text": "Hi"}}
LOCALES: dict[str, ChannelSources] = {
    "fr": {"email": {"subject": "Bonjour", "text": "Salut"}, "sms": {"text": "Salut"}},
    "fr-CA": {"email": {"subject": "Allô", "text": "Salut"}},
    "pt-BR": {"sms": {"text": "Olá"}},
    "zh-Hant": {"sms": {"text": "你好"}},
}


@pytest.mark.parametrize(
    ("locale", "channel", "tag"),
    [
        pytest.param("fr-CA", "email", "fr-CA", id="the-exact-tag"),
        pytest.param("fr-CA", "sms", "fr", id="the-language-when-the-exact-tag-lacks-the-channel"),
        pytest.param("fr-BE", "email", "fr", id="the-language-alone"),
        pytest.param("fr", "email", "fr", id="a-language"),
        pytest.param("FR_ca", "email", "fr-CA", id="any-case-and-underscores"),
        pytest.param("pt-br", "sms", "pt-BR", id="lower-case-region"),
        pytest.param("pt-BR", "email", None, id="the-default-when-no-variant-has-the-channel"),
        pytest.param("pt", "sms", None, id="a-language-does-not-get-its-regions"),
        pytest.param("zh-Hant-TW", "sms", "zh-Hant", id="subtags-dropped-one-by-one"),
        pytest.param("fr-x-a", "sms", "fr", id="no-trailing-singleton"),
        pytest.param("de", "email", None, id="an-unknown-locale"),
        pytest.param(None, "email", None, id="no-locale"),
        pytest.param("", "email", None, id="an-empty-locale"),
    ],
)
def test_the_variant_for_a_locale_is_the_most_specific_with_the_channel(
    locale: str | None, channel: str, tag: str | None
) -> None:
    chosen = localised(DEFAULT, LOCALES, locale, channel)
    assert chosen == (tag, (DEFAULT if tag is None else LOCALES[tag])[channel])


def test_no_variant_for_a_channel_the_template_lacks() -> None:
    assert localised(DEFAULT, LOCALES, "fr", "push") is None
    assert localised({}, {"fr": {"push": {"text": "Salut"}}}, "de", "push") is None


@pytest.mark.parametrize(
    ("tag", "canonical"),
    [
        ("fr", "fr"),
        ("FR", "fr"),
        ("pt-br", "pt-BR"),
        ("pt_BR", "pt-BR"),
        ("ZH-HANT-tw", "zh-Hant-TW"),
        ("es-419", "es-419"),
        ("de-CH-1996", "de-CH-1996"),
        ("en-US-x-TWAIN", "en-US-x-twain"),
    ],
)
def test_tags_are_put_in_canonical_case(tag: str, canonical: str) -> None:
    assert canonical_tag(tag) == canonical


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
        pytest.param({"id": "welcome", "version": 2**31}, {}, "content/template/version", id="version-too-big"),
        pytest.param({"id": "welcome"}, {"subject": "Hi"}, "content/template", id="inline-too"),
    ],
)
def test_an_invalid_template_reference_is_refused(
    template: dict[str, Any], content: dict[str, str], field: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_request(templated_request(["email"], template, **content))
    assert caught.value.field == field
