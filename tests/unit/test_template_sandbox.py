"""The bounded sandbox: hostile templates are refused as the template's fault, quickly and naming the
field; ordinary templates render as Jinja2 renders them."""

from __future__ import annotations

import pytest
from jinja2.sandbox import SandboxedEnvironment

from shared.errors import InvalidRequest
from shared.template_sandbox import RenderLimits
from shared.templates import TemplateRenderer, check_sources

pytestmark = pytest.mark.unit

VARIABLES = {"x": "a" * 1000, "name": "Ada", "items": list(range(50))}

# Each makes a shared service spend seconds of CPU or gigabytes of memory without the limits.
COSTLY = {
    "huge-power": "{{ 7**5000000 }}",
    "repeated-string": "{{ 'A' * 1100000 }}",
    "repeated-list": "{{ [1] * 10**9 }}",
    "repeated-variable": "{{ x * 100000 }}",
    "product-of-big-ints": "{{ 2**4000 * 2**4000 }}",
    "nested-loops": "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
    "long-loop": "{% for i in range(100000) %}x{% endfor %}",
    "doubling-concatenation": (
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}"
    ),
    "padding-filter": "{{ ''|center(1000000000) }}",
    "padding-method": "{{ 'a'.ljust(10**9) }}",
    "format-width": "{{ '{:>999999999}'.format('a') }}",
    "format-width-from-argument": "{{ '{:>{}}'.format('a', 999999999) }}",
    "format-repeats": "{{ '{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}'.format(x * 200) }}",
    "percent-width": "{{ '%999999999s' % 'a' }}",
    "percent-star": "{{ '%*s' % (999999999, 'a') }}",
    "format-filter-width": "{{ '%999999999s'|format('a') }}",
    "replace-growth": "{{ x.replace('', 'y' * 1000) }}",
    "replace-filter-chain": "{{ x|replace('a', 'a' * 30)|replace('a', 'a' * 30)|replace('a', 'a' * 30) }}",
    "join-separator": "{{ ('y' * 200000).join(range(100)|map('string')|list) }}",
    "join-filter-separator": "{{ range(1000)|join('y' * 10000) }}",
    "expandtabs": "{{ ('\t' * 200000).expandtabs(10000) }}",
    "translate": "{{ 'aaaa'.translate({97: 'b' * 100000}) }}",
    "indent": "{{ ('a\n' * 1000)|indent(10000) }}",
    "slice-count": "{{ range(10)|slice(1000000000)|list }}",
    "batch-size": "{{ range(10)|batch(1000000000)|list }}",
    "output-size": "{% for i in range(300) %}{{ x }}{% endfor %}",
}


@pytest.fixture(scope="module")
def renderer() -> TemplateRenderer:
    return TemplateRenderer(cache_size=16)


@pytest.mark.parametrize("source", COSTLY.values(), ids=COSTLY.keys())
@pytest.mark.parametrize("html", [False, True], ids=["text", "html"])
def test_a_costly_template_is_refused_naming_its_field(renderer: TemplateRenderer, source: str, html: bool) -> None:
    with pytest.raises(InvalidRequest) as refused:
        renderer.render("content/text", source, VARIABLES, html=html)
    assert refused.value.field == "content/text"
    assert refused.value.detail.startswith("template too costly: ")


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("{{ 1/0 }}", "ZeroDivisionError"),
        ("{{ '%d' % 'a' }}", "TypeError"),
        ("{{ range(10**9) }}", "OverflowError"),
        ("{{ 2.0 ** 100000 }}", "OverflowError"),
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "nested too deeply"),
        ("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}", "nested too deeply"),
        ("{{ lipsum(1000) }}", "'lipsum' is undefined"),
        ("{{ items.append(1) }}", "unsafe"),
    ],
)
def test_any_error_while_rendering_is_the_templates_fault(renderer: TemplateRenderer, source: str, error: str) -> None:
    """Rendering is pure: whatever it raises is an invalid request (a permanent failure of that
    notification), never an exception that would look like the environment's."""
    with pytest.raises(InvalidRequest, match=error) as refused:
        renderer.render("content/html", source, VARIABLES, html=True)
    assert refused.value.field == "content/html"
    assert refused.value.detail.startswith("template error: ")


ORDINARY = [
    "Hello {{ name|upper }}, {{ '%05d' % 42 }} {{ '{:,}'.format(1234567) }} {{ '{:>8}'.format('right') }}",
    "{% for i in items %}{{ loop.index }}:{{ i }}{{ ', ' if not loop.last }}{% endfor %}",
    "{{ items|join(', ') }} {{ 'hello'|replace('l', 'L') }} {{ 'a\nb'|indent(2) }} {{ 'ab'.center(6) }}|",
    "{{ '%s and %s'|format('x', 'y') }} {{ (x ~ x)|length }} {{ 2 ** 100 }} {{ [1, 2] * 3 }} {{ 'ab' * 3 }}",
    "{{ items|batch(7)|list|length }} {{ items|slice(3)|map('length')|list }} {{ name.replace('a', 'A') }}",
    "{% set ns = namespace(total=0) %}{% for i in items %}{% set ns.total = ns.total + i %}{% endfor %}{{ ns.total }}",
    "{{ '{0}-{0}'.format(name) }} {{ '{n}'.format_map({'n': name}) }} {{ 'a\tb'.expandtabs(4) }}",
]


@pytest.mark.parametrize("source", ORDINARY)
@pytest.mark.parametrize("html", [False, True], ids=["text", "html"])
def test_ordinary_templates_render_as_jinja_renders_them(renderer: TemplateRenderer, source: str, html: bool) -> None:
    expected = SandboxedEnvironment(autoescape=html).from_string(source).render(VARIABLES)
    assert renderer.render("content/text", source, VARIABLES, html=html) == expected


def test_the_limits_are_the_renderers_to_set() -> None:
    tight = TemplateRenderer(limits=RenderLimits(max_operations=50, max_output_chars=100))
    assert tight.render("content/text", "{% for i in range(10) %}{{ i }}{% endfor %}", {}) == "0123456789"
    with pytest.raises(InvalidRequest, match="more than 50 operations"):
        tight.render("content/text", "{% for i in range(60) %}{% endfor %}", {})
    with pytest.raises(InvalidRequest, match="over 100"):
        tight.render("content/text", "{{ 'a' * 101 }}", {})


def test_a_template_is_refused_when_stored_if_it_cannot_render_within_the_limits(renderer: TemplateRenderer) -> None:
    """The trial render at write time uses the declared samples; a variable without one is empty, and
    errors that may come from a missing sample are left to the preview and the router."""
    declared = {"name": {}, "count": {"sample": 3}}
    check_sources(renderer, {"sms": {"text": "Hi {{ name.first }} x{{ count * 2 }}"}}, declared, samples={"count": 3})
    check_sources(renderer, {"sms": {"text": "{{ name * 2 }}"}}, declared, samples={})  # no sample: fine
    with pytest.raises(InvalidRequest) as refused:
        check_sources(renderer, {"email": {"subject": "ok", "html": "{{ 7**5000000 }}"}}, declared, samples={})
    assert refused.value.field == "channels/email/html"
    source = "{% for i in range(count) %}{% for j in range(count) %}{% endfor %}{% endfor %}"
    with pytest.raises(InvalidRequest, match="too costly") as refused:
        check_sources(renderer, {"sms": {"text": source}}, declared, samples={"count": 1000}, at="locales/fr")
    assert refused.value.field == "locales/fr/sms/text"


def test_compiling_folds_no_costly_constant(renderer: TemplateRenderer) -> None:
    """Jinja2 folds constant expressions when it compiles; intercepted operators are not folded, so
    checking that a template compiles costs nothing whatever it computes."""
    assert renderer.variables_of("content/text", "{{ 7**5000000 }}{{ 'A' * 10**9 }}") == set()


def test_a_render_budget_is_per_render(renderer: TemplateRenderer) -> None:
    """Each render starts with the whole budget: many cheap renders in a row are all fine."""
    source = "{% for i in range(40000) %}{% endfor %}done"
    assert [renderer.render("content/text", source, {}) for _ in range(5)] == ["done"] * 5
