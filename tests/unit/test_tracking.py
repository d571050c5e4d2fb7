"""Open and click tracking: signed tokens, link rewriting and the pixel, and the router putting them in a mail."""

from __future__ import annotations

import base64
import hashlib
import hmac
from html.parser import HTMLParser

import pytest
from pydantic import SecretStr

from services.router import tracking
from services.router.handlers import RouterHandler
from services.router.settings import RouterSettings
from services.router.tracking import EmailTracking, add_pixel, track_links
from shared.config import ConfigurationError
from shared.kafka.records import Produce
from shared.messages import EMAIL_DELIVERY
from shared.status_events import StatusReporter
from shared.templates import TemplateRenderer
from shared.tracking import CLICK, MAX_TOKEN_CHARACTERS, OPEN, InvalidToken, Tracked, TrackingTokens, is_web_url
from tests.unit.test_router import TOPICS, routable

pytestmark = pytest.mark.unit

KEY = b"unit-tracking-key-0123456789abcdef"
BASE = "https://herald.example.com"
TENANT = "acme"
NOTIFICATION = "6f1c1f4e-3a9b-4d7e-9d8b-2b1f5c7e9a10"


@pytest.fixture
def tokens() -> TrackingTokens:
    return TrackingTokens(KEY)


def marked(url: str) -> str:
    return f"T[{url}]"


# --- tokens ---------------------------------------------------------------------------------------


def test_open_token_round_trip(tokens: TrackingTokens) -> None:
    token = tokens.open_token(TENANT, NOTIFICATION)
    assert tokens.verify(token) == Tracked(OPEN, TENANT, NOTIFICATION)


def test_click_token_round_trip_keeps_the_url_exactly(tokens: TrackingTokens) -> None:
    url = 'https://shop.example.com/p?a=1&b="x"#frag ü'
    token = tokens.click_token(TENANT, NOTIFICATION, url)
    assert tokens.verify(token) == Tracked(CLICK, TENANT, NOTIFICATION, url)


def test_tokens_are_url_safe_and_compact(tokens: TrackingTokens) -> None:
    token = tokens.open_token(TENANT, NOTIFICATION)
    assert token.replace("-", "").replace("_", "").isalnum()
    assert len(token) < 120


def flip(token: str, at: int) -> str:
    return token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1 :]


@pytest.mark.parametrize("at", [0, 10, 21, 30, 45])
def test_a_changed_character_is_rejected(tokens: TrackingTokens, at: int) -> None:
    token = tokens.click_token(TENANT, NOTIFICATION, "https://example.com/")
    with pytest.raises(InvalidToken):
        tokens.verify(flip(token, at))


def test_a_token_for_another_url_cannot_be_made_from_one_for_this_url(tokens: TrackingTokens) -> None:
    """Swapping the signed payload for another one (an open redirect attempt) breaks the signature."""
    raw = base64.urlsafe_b64decode(tokens.click_token(TENANT, NOTIFICATION, "https://example.com/") + "==")
    forged = raw[:16] + raw[16:].replace(b"https://example.com/", b"https://evil.example/")
    with pytest.raises(InvalidToken):
        tokens.verify(base64.urlsafe_b64encode(forged).rstrip(b"=").decode())


def test_a_token_signed_with_another_key_is_rejected(tokens: TrackingTokens) -> None:
    other = TrackingTokens(b"another-key-of-enough-length-0123456789")
    with pytest.raises(InvalidToken):
        tokens.verify(other.open_token(TENANT, NOTIFICATION))


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "not a tracking token"),
        ("not a token", "not a tracking token"),
        ("a.b", "not a tracking token"),
        ("=" * 8, "not a tracking token"),
        ("A" * (MAX_TOKEN_CHARACTERS + 1), "not a tracking token"),
        ("abcde", "not a tracking token"),  # no base64 length
        ("abc", "bad signature"),
    ],
)
def test_malformed_tokens_are_rejected(tokens: TrackingTokens, token: str, reason: str) -> None:
    with pytest.raises(InvalidToken) as caught:
        tokens.verify(token)
    assert str(caught.value) == reason


def _signed(tokens: TrackingTokens, payload: bytes) -> str:
    """A token for ``payload`` with a valid signature: what only a holder of the key can make."""
    mac = hmac.new(KEY, payload, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(mac + payload).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not a tracking token"),
        (b'[2, "o", "acme", "n-1"]', "unknown token version or kind"),
        (b'[1, "x", "acme", "n-1"]', "unknown token version or kind"),
        (b'[1, "o", "acme", 7]', "unknown token version or kind"),
        (b'[1, "c", "acme", "n-1"]', "unknown token version or kind"),
    ],
)
def test_a_signed_token_of_the_wrong_shape_is_rejected(tokens: TrackingTokens, payload: bytes, reason: str) -> None:
    """Herald signed it, so the shape is checked rather than trusted all the same."""
    with pytest.raises(InvalidToken) as caught:
        tokens.verify(_signed(tokens, payload))
    assert str(caught.value) == reason


def test_a_token_of_exactly_the_longest_length_verifies_and_a_longer_one_does_not(tokens: TrackingTokens) -> None:
    def click(path_length: int) -> str:
        return tokens.click_token(TENANT, NOTIFICATION, "https://example.com/" + "a" * path_length)

    longest = next(click(n) for n in range(2900, 3100) if len(click(n)) == MAX_TOKEN_CHARACTERS)
    assert tokens.verify(longest).kind == CLICK
    longer = click(3100)
    assert len(longer) > MAX_TOKEN_CHARACTERS
    with pytest.raises(InvalidToken, match=r"^not a tracking token$"):
        tokens.verify(longer)


def test_tokens_of_every_length_round_trip_unpadded(tokens: TrackingTokens) -> None:
    """Whatever their length and last character: the padding is dropped, and only the padding."""
    urls = [f"https://example.com/{'x' * n}?{n}" for n in range(200)]
    minted = [tokens.click_token(TENANT, NOTIFICATION, url) for url in urls]
    assert {len(token) % 4 for token in minted} == {0, 2, 3}
    assert not any(token.endswith("=") for token in minted)
    assert [tokens.verify(token).url for token in minted] == urls


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^a tracking signing key needs at least 32 bytes$"):
        TrackingTokens(b"k" * 31)
    TrackingTokens(b"k" * 32)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/a", True),
        ("HTTP://example.com", True),
        ("  https://example.com/  ", True),
        ("mailto:ada@example.com", False),
        ("tel:+4420", False),
        ("#top", False),
        ("/relative", False),
        ("javascript:alert(1)", False),
        ("https://", False),
        ("http://[::1", False),
    ],
)
def test_is_web_url(url: str, expected: bool) -> None:
    assert is_web_url(url) is expected


# --- rewriting links ------------------------------------------------------------------------------


def test_http_links_are_rewritten_and_others_kept() -> None:
    source = (
        '<p><a href="https://example.com/a">A</a> <a href="mailto:ada@example.com">mail</a> '
        '<a href="tel:+442079460958">call</a> <a href="#top">top</a> <a href="/relative">rel</a> '
        "<a name=anchor>no href</a> <a href='http://example.com/b'>B</a></p>"
    )
    assert track_links(source, marked) == (
        '<p><a href="T[https://example.com/a]">A</a> <a href="mailto:ada@example.com">mail</a> '
        '<a href="tel:+442079460958">call</a> <a href="#top">top</a> <a href="/relative">rel</a> '
        '<a name=anchor>no href</a> <a href="T[http://example.com/b]">B</a></p>'
    )


def test_other_attributes_are_kept_and_values_escaped() -> None:
    source = '<a class="btn" HREF="https://example.com/?a=1&amp;b=2" data-x=\'say "hi"\' target=_blank hidden>Go</a>'
    seen: list[str] = []

    def record(url: str) -> str:
        seen.append(url)
        return "https://t.example/c/1?x=<y>&z"

    rewritten = track_links(source, record)
    # The tracker is given the URL as a browser would follow it: entities decoded.
    assert seen == ["https://example.com/?a=1&b=2"]
    assert rewritten == (
        '<a class="btn" href="https://t.example/c/1?x=&lt;y&gt;&amp;z" data-x="say &quot;hi&quot;"'
        ' target="_blank" hidden>Go</a>'
    )
    parsed = _Anchors()
    parsed.feed(rewritten)
    assert parsed.hrefs == ["https://t.example/c/1?x=<y>&z"]


def test_only_the_first_of_duplicate_hrefs_is_rewritten() -> None:
    rewritten = track_links('<a href="https://a.example" href="https://b.example">x</a>', marked)
    assert rewritten == '<a href="T[https://a.example]" href="https://b.example">x</a>'


def test_links_in_comments_scripts_and_attribute_values_are_left_alone() -> None:
    source = (
        '<!-- <a href="https://hidden.example">x</a> -->'
        "<script>var s = '<a href=\"https://script.example\">';</script>"
        '<img alt=\'<a href="https://alt.example">\' src="https://img.example/i.png">'
        '<a href="https://real.example">real</a>'
    )
    rewritten = track_links(source, marked)
    assert rewritten == source.replace('href="https://real.example"', 'href="T[https://real.example]"')


def test_positions_hold_across_lines_and_entities() -> None:
    source = '<html>\n<body>\r\n<p>caf&eacute; &amp; more</p>\n  <a\n   href="https://example.com/x"\n>x</a>\n</body>'
    assert track_links(source, marked) == source.replace(
        '<a\n   href="https://example.com/x"\n>', '<a href="T[https://example.com/x]">'
    )


def test_a_link_the_tracker_declines_is_left_as_it_was() -> None:
    source = '<a href="https://example.com/very-long">x</a>'
    assert track_links(source, lambda url: None) == source


def test_unclosed_markup_does_not_break_rewriting() -> None:
    source = '<p><a href="https://example.com/a">A<p><b>unclosed <a href="https://example.com/b"'
    assert track_links(source, marked).startswith('<p><a href="T[https://example.com/a]">A<p><b>unclosed ')


# --- the pixel ------------------------------------------------------------------------------------


def test_pixel_goes_before_the_last_body_end() -> None:
    source = "<html><body><p>Hi</p><!-- </body> --></BODY></html>"
    tracked = add_pixel(source, "https://t.example/o/abc.gif")
    assert tracked.startswith("<html><body><p>Hi</p><!-- </body> --><img ")
    assert tracked.endswith("</BODY></html>")
    assert 'src="https://t.example/o/abc.gif" width="1" height="1" alt=""' in tracked


def test_pixel_goes_at_the_end_without_a_body() -> None:
    tracked = add_pixel("<p>Hi</p>", "https://t.example/o/a&b.gif")
    assert tracked.startswith("<p>Hi</p><img ")
    assert 'src="https://t.example/o/a&amp;b.gif"' in tracked


# --- EmailTracking --------------------------------------------------------------------------------


@pytest.fixture
def email_tracking(tokens: TrackingTokens) -> EmailTracking:
    return EmailTracking(BASE, tokens)


def test_apply_points_links_and_pixel_at_the_gateway_with_verifiable_tokens(
    email_tracking: EmailTracking, tokens: TrackingTokens
) -> None:
    source = '<body><a href="https://shop.example/o/42">Order</a> <a href="mailto:help@example.com">help</a></body>'
    tracked = email_tracking.apply(source, tenant_id=TENANT, notification_id=NOTIFICATION, opens=True, clicks=True)
    anchors = _Anchors()
    anchors.feed(tracked)
    click, mailto = anchors.hrefs
    assert mailto == "mailto:help@example.com"
    assert click.startswith(f"{BASE}/t/c/")
    assert tokens.verify(click.removeprefix(f"{BASE}/t/c/")) == Tracked(
        CLICK, TENANT, NOTIFICATION, "https://shop.example/o/42"
    )
    [pixel] = anchors.images
    assert pixel.startswith(f"{BASE}/t/o/")
    assert pixel.endswith(".gif")
    assert tokens.verify(pixel.removeprefix(f"{BASE}/t/o/").removesuffix(".gif")) == Tracked(OPEN, TENANT, NOTIFICATION)


@pytest.mark.parametrize(("opens", "clicks"), [(True, False), (False, True), (False, False)])
def test_apply_adds_only_what_is_asked(email_tracking: EmailTracking, opens: bool, clicks: bool) -> None:
    source = '<a href="https://example.com/">x</a>'
    tracked = email_tracking.apply(source, tenant_id=TENANT, notification_id=NOTIFICATION, opens=opens, clicks=clicks)
    assert ("/t/o/" in tracked) is opens
    assert ("/t/c/" in tracked) is clicks


def test_a_link_too_long_for_a_token_stays_untracked(email_tracking: EmailTracking) -> None:
    source = f'<a href="https://example.com/{"a" * MAX_TOKEN_CHARACTERS}">x</a>'
    tracked = email_tracking.apply(source, tenant_id=TENANT, notification_id=NOTIFICATION, opens=False, clicks=True)
    assert tracked == source


# --- configuration ----------------------------------------------------------------------------------


def test_from_settings_neither_is_off() -> None:
    assert tracking.from_settings(RouterSettings()) is None


def test_from_settings_both_give_tracking() -> None:
    configured = tracking.from_settings(
        RouterSettings(tracking_base_url=f"{BASE}/", tracking_signing_key=SecretStr(KEY.decode()))
    )
    assert configured is not None
    assert configured.base_url == BASE


@pytest.mark.parametrize(
    "settings",
    [
        {"tracking_base_url": BASE},
        {"tracking_signing_key": SecretStr(KEY.decode())},
    ],
)
def test_from_settings_refuses_half_a_configuration(settings: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        tracking.from_settings(RouterSettings(**settings))  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["herald.example.com", "ftp://herald.example.com", "https://h.example/?q=1"])
def test_a_bad_base_url_is_refused_by_the_settings(url: str) -> None:
    with pytest.raises(ValueError, match="tracking_base_url"):
        RouterSettings(tracking_base_url=url)


# --- the router -----------------------------------------------------------------------------------


@pytest.fixture
def handler() -> RouterHandler:
    return RouterHandler(renderer=TemplateRenderer(), reporter=StatusReporter(TOPICS.status, "router"), topics=TOPICS)


@pytest.fixture
def tracking_handler(email_tracking: EmailTracking) -> RouterHandler:
    return RouterHandler(
        renderer=TemplateRenderer(),
        reporter=StatusReporter(TOPICS.status, "router"),
        topics=TOPICS,
        tracking=email_tracking,
    )


async def _rendered_html(handler: RouterHandler, *, opens: bool, clicks: bool) -> str | None:
    message = routable("Hello", {"name": "Ada", "url": "https://shop.example/?a=1&b=2"})
    message.value["content"]["html"] = '<p>{{ name }}</p><a href="{{ url }}">shop</a>'
    message.value["tracking"] = {"opens": opens, "clicks": clicks}
    delivery_record, _ = await handler(message)
    assert isinstance(delivery_record, Produce)
    return EMAIL_DELIVERY.decode(delivery_record.value)["html"]


async def test_the_router_tracks_the_rendered_html(tracking_handler: RouterHandler, tokens: TrackingTokens) -> None:
    rendered = await _rendered_html(tracking_handler, opens=True, clicks=True)
    assert rendered is not None
    anchors = _Anchors()
    anchors.feed(rendered)
    [link] = anchors.hrefs
    # The variable was autoescaped into the href; the token holds the URL the reader would have followed.
    assert tokens.verify(link.removeprefix(f"{BASE}/t/c/")).url == "https://shop.example/?a=1&b=2"
    assert len(anchors.images) == 1


async def test_the_router_leaves_untracked_mail_alone(tracking_handler: RouterHandler) -> None:
    rendered = await _rendered_html(tracking_handler, opens=False, clicks=False)
    assert rendered == '<p>Ada</p><a href="https://shop.example/?a=1&amp;b=2">shop</a>'


async def test_tracking_asked_for_but_not_configured_is_sent_untracked(handler: RouterHandler) -> None:
    rendered = await _rendered_html(handler, opens=True, clicks=True)
    assert rendered == '<p>Ada</p><a href="https://shop.example/?a=1&amp;b=2">shop</a>'


async def test_the_router_passes_attachments_on(handler: RouterHandler) -> None:
    message = routable("Invoice", {"name": "Ada"})
    attachments = [
        {
            "filename": "a.pdf",
            "content_type": "application/pdf",
            "url": "https://f.example/a.pdf",
            "content_base64": None,
        },
        {"filename": "b.txt", "content_type": "text/plain", "url": None, "content_base64": "aGk="},
    ]
    message.value["content"]["attachments"] = attachments  # type: ignore[typeddict-item]
    delivery_record, _ = await handler(message)
    assert isinstance(delivery_record, Produce)
    assert EMAIL_DELIVERY.decode(delivery_record.value)["attachments"] == attachments


class _Anchors(HTMLParser):
    """Every ``<a href>`` and ``<img src>`` of a document, as a browser reads them (the parser decodes entities)."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.hrefs.append(values["href"] or "")
        if tag == "img" and values.get("src"):
            self.images.append(values["src"] or "")
