"""Herald's open and click tracking, added to a rendered email's html part.

:func:`track_links` and :func:`add_pixel` are plain functions over html text, built on the standard
library's html parser (so a ``<a`` in a comment, a script or an attribute value is not taken for a
link). :class:`EmailTracking` applies them with signed tokens (:mod:`shared.tracking`) that point at
the gateway's ``/t/c/<token>`` (record a click, redirect) and ``/t/o/<token>.gif`` (record an open).

Only the html part is tracked: the text part keeps its links, and a text-only mail has no pixel.
"""

from __future__ import annotations

import html as html_text
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser

import structlog

from services.router.settings import RouterSettings
from shared.config import refuse_configuration
from shared.messages import RoutableNotification
from shared.tracking import MAX_TOKEN_CHARACTERS, TrackingTokens, is_web_url

log = structlog.get_logger(__name__)

Attributes = Sequence[tuple[str, str | None]]
PIXEL = '<img src="{src}" width="1" height="1" alt="" style="display:block;width:1px;height:1px;border:0" />'


@dataclass(frozen=True)
class _Link:
    start: int
    end: int
    attributes: Attributes
    self_closing: bool


class _Scanner(HTMLParser):
    """Records where each ``<a>`` start tag is in the source, and where the last ``</body>`` starts."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        # getpos() gives (line, column); lines are counted at "\n", as here.
        self._line_starts = [0, *(match.end() for match in re.finditer("\n", source))]
        self.links: list[_Link] = []
        self.body_end: int | None = None
        self.feed(source)
        self.close()

    def handle_starttag(self, tag: str, attrs: Attributes) -> None:
        self._start(tag, attrs, self_closing=False)

    def handle_startendtag(self, tag: str, attrs: Attributes) -> None:
        self._start(tag, attrs, self_closing=True)

    def handle_endtag(self, tag: str) -> None:
        if tag == "body":
            self.body_end = self._offset()

    def _start(self, tag: str, attrs: Attributes, *, self_closing: bool) -> None:
        if tag == "a":
            start = self._offset()
            self.links.append(_Link(start, start + len(self.get_starttag_text() or ""), attrs, self_closing))

    def _offset(self) -> int:
        line, column = self.getpos()
        return self._line_starts[line - 1] + column


def track_links(source: str, tracked_url: Callable[[str], str | None]) -> str:
    """``source`` with each ``<a href>`` to an http(s) URL pointing at ``tracked_url(href)`` instead.

    The href is given unescaped and stripped, as a browser would follow it. Other attributes are
    kept (the tag is written anew, its values escaped); a link ``tracked_url`` returns None for is
    left as it was.
    """
    pieces: list[str] = []
    done = 0
    for link in _Scanner(source).links:
        # A browser follows the first href of a tag; later duplicates are ignored, here too.
        at = next((i for i, (name, _) in enumerate(link.attributes) if name == "href"), None)
        href = link.attributes[at][1] if at is not None else None
        if at is None or href is None or not is_web_url(href):
            continue
        replacement = tracked_url(href.strip())
        if replacement is None:
            continue
        attributes = [*link.attributes[:at], ("href", replacement), *link.attributes[at + 1 :]]
        pieces += [source[done : link.start], _start_tag("a", attributes, link.self_closing)]
        done = link.end
    pieces.append(source[done:])
    return "".join(pieces)


def add_pixel(source: str, pixel_url: str) -> str:
    """``source`` with a 1x1 image of ``pixel_url`` just before its last ``</body>``, else at its end."""
    pixel = PIXEL.format(src=html_text.escape(pixel_url, quote=True))
    at = _Scanner(source).body_end
    if at is None:
        return source + pixel
    return source[:at] + pixel + source[at:]


def _start_tag(tag: str, attributes: Attributes, self_closing: bool) -> str:
    written = [name if value is None else f'{name}="{html_text.escape(value)}"' for name, value in attributes]
    return f"<{' '.join([tag, *written])}{' /' if self_closing else ''}>"


@dataclass(frozen=True)
class EmailTracking:
    """Tracked links and the open pixel, pointing at the gateway (``base_url``) with signed tokens."""

    base_url: str
    tokens: TrackingTokens

    def apply(self, source: str, *, tenant_id: str, notification_id: str, opens: bool, clicks: bool) -> str:
        """``source`` (rendered html) with its links tracked if ``clicks`` and a pixel added if ``opens``."""
        if clicks:

            def tracked_url(url: str) -> str | None:
                token = self.tokens.click_token(tenant_id, notification_id, url)
                # The gateway refuses longer tokens: such a (very long) link keeps working, untracked.
                return f"{self.base_url}/t/c/{token}" if len(token) <= MAX_TOKEN_CHARACTERS else None

            source = track_links(source, tracked_url)
        if opens:
            source = add_pixel(source, f"{self.base_url}/t/o/{self.tokens.open_token(tenant_id, notification_id)}.gif")
        return source


def from_settings(settings: RouterSettings) -> EmailTracking | None:
    """Tracking as ``HERALD_TRACKING_*`` configure it, None when both are unset; stops start-up if only one is."""
    base_url, key = settings.tracking_base_url, settings.tracking_signing_key
    if base_url is None and key is None:
        return None
    if base_url is None or key is None:
        refuse_configuration(
            "invalid configuration:\n  HERALD_TRACKING_BASE_URL and HERALD_TRACKING_SIGNING_KEY: give both or neither"
        )
    return EmailTracking(base_url.rstrip("/"), TrackingTokens(key.get_secret_value().encode()))


def tracked_html(source: str | None, notification: RoutableNotification, tracking: EmailTracking | None) -> str | None:
    """The rendered html with the tracking the notification asks for, if any and if ``tracking`` is configured.

    A request for tracking the router is not configured for is sent untracked, with a warning:
    losing the mail over its statistics would be worse.
    """
    wanted = notification["tracking"]
    if source is None or not (wanted["opens"] or wanted["clicks"]):
        return source
    if tracking is None:
        log.warning("email_tracking_not_configured", notification_id=notification["notification_id"])
        return source
    return tracking.apply(
        source,
        tenant_id=notification["tenant_id"],
        notification_id=notification["notification_id"],
        opens=wanted["opens"],
        clicks=wanted["clicks"],
    )
