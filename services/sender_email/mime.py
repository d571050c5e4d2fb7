"""Building the MIME bytes of an email, directly.

The standard library's ``email`` package re-folds every header, compiles a boundary regex and walks
a generator per message: about 1 ms of CPU per mail, most of the sender's time. Herald's mails have
one shape (text and/or html, a handful of headers), so they are written out here instead: each body
is base64 of its UTF-8 (safe for any content and line length), the boundary is derived from the
delivery id (base64 never contains ``_``, so it cannot occur in a body), and only a subject that is
not plain short ASCII goes through ``email.header`` for RFC 2047 encoding and folding.
"""

from __future__ import annotations

import base64
import time
from email.header import Header
from email.utils import formatdate
from functools import lru_cache

from shared.messages import EmailDelivery

CRLF = "\r\n"
# RFC 5322 allows 998 characters a line; keep plain subjects well inside it, with the header name.
MAX_PLAIN_SUBJECT = 900


def build_message(delivery: EmailDelivery, sender: str) -> bytes:
    """The complete message: text and/or html part, and a Message-ID that is stable per delivery.

    Raises:
        ValueError: a header value holds a line break (it would inject headers) or the mail has no body.
    """
    to = delivery["to"]
    _single_line("To", to)
    _single_line("From", sender)
    headers = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {_subject(delivery['subject'])}",
        f"Date: {_date(int(time.time()))}",
        # The same delivery always has the same Message-ID, so a receiving system can spot a duplicate.
        f"Message-ID: <{delivery['delivery_id']}@herald>",
        f"X-Herald-Notification-Id: {delivery['notification_id']}",
        "MIME-Version: 1.0",
    ]
    parts = [(subtype, body) for subtype, body in (("plain", delivery["text"]), ("html", delivery["html"])) if body]
    if not parts:
        raise ValueError("an email needs a text or an html body")
    if len(parts) == 1:
        subtype, body = parts[0]
        lines = [*headers, *_part_headers(subtype), "", _base64(body)]
    else:
        boundary = f"=_herald_{delivery['delivery_id']}"
        lines = [*headers, f'Content-Type: multipart/alternative; boundary="{boundary}"', ""]
        for subtype, body in parts:
            lines += [f"--{boundary}", *_part_headers(subtype), "", _base64(body)]
        lines.append(f"--{boundary}--")
    return (CRLF.join(lines) + CRLF).encode()


def _part_headers(subtype: str) -> list[str]:
    return [f'Content-Type: text/{subtype}; charset="utf-8"', "Content-Transfer-Encoding: base64"]


def _base64(body: str) -> str:
    # encodebytes wraps at 76 characters with "\n"; SMTP wants CRLF.
    return base64.encodebytes(body.encode()).decode("ascii").replace("\n", CRLF).rstrip(CRLF)


def _subject(subject: str) -> str:
    _single_line("Subject", subject)
    if subject.isascii() and subject.isprintable() and len(subject) <= MAX_PLAIN_SUBJECT:
        return subject
    return Header(subject, "utf-8", header_name="Subject").encode(linesep=CRLF)


def _single_line(name: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise ValueError(f"the {name} header must be a single line")


@lru_cache(maxsize=1)
def _date(second: int) -> str:
    """The Date header value; formatted once a second, not once a mail."""
    return formatdate(second, usegmt=True)
