"""Building the MIME bytes of an email, directly.

The standard library's ``email`` package re-folds every header, compiles a boundary regex and walks
a generator per message: about 1 ms of CPU per mail, most of the sender's time. Herald's mails have
one shape (text and/or html, a handful of headers, maybe attachments), so they are written out here
instead: each body is base64 of its UTF-8 (safe for any content and line length), the boundaries are
derived from the delivery id (base64 never contains ``_``, so they cannot occur in a body), and only
a subject that is not plain short ASCII goes through ``email.header`` for RFC 2047 encoding and folding.
With attachments the mail is ``multipart/mixed``: the body first, then each file as base64, its
name as an RFC 2231 parameter when it is not short plain ASCII.
"""

from __future__ import annotations

import base64
import time
from email.header import Header
from email.utils import formatdate
from functools import lru_cache
from urllib.parse import quote

from shared.messages import Attachment, EmailDelivery

CRLF = "\r\n"
# RFC 5322 allows 998 characters a line; keep plain subjects well inside it, with the header name.
MAX_PLAIN_SUBJECT = 900
# File names up to this long in plain ASCII are written as they are; others are RFC 2231-encoded.
MAX_PLAIN_FILENAME = 60
# RFC 2231 continuations: percent-encoded pieces of at most this many characters, a line each.
RFC2231_PIECE = 50
# RFC 2231 attribute-char: what a parameter value may hold without percent-encoding.
_ATTRIBUTE_CHARS = "!#$&+-.^_`|~"


def build_message(delivery: EmailDelivery, sender: str) -> bytes:
    """The complete message: text and/or html part, attachments, and a Message-ID that is stable per delivery.

    Raises:
        ValueError: a header value holds a line break (it would inject headers), the mail has no body,
            or an attachment is not inline base64 (URL attachments are fetched before this).
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
    body = _body(delivery)
    attachments = delivery["attachments"]
    if not attachments:
        lines = [*headers, *body]
    else:
        # Different prefixes: neither boundary may begin the other's delimiter line.
        boundary = f"=_mixed_{delivery['delivery_id']}"
        lines = [*headers, f'Content-Type: multipart/mixed; boundary="{boundary}"', "", f"--{boundary}", *body]
        for attachment in attachments:
            lines += [f"--{boundary}", *_attachment(attachment)]
        lines.append(f"--{boundary}--")
    return (CRLF.join(lines) + CRLF).encode()


def _body(delivery: EmailDelivery) -> list[str]:
    """The body entity (its headers, a blank line, its content): one text part, or the alternatives."""
    parts = [(subtype, body) for subtype, body in (("plain", delivery["text"]), ("html", delivery["html"])) if body]
    if not parts:
        raise ValueError("an email needs a text or an html body")
    if len(parts) == 1:
        subtype, body = parts[0]
        return [*_part_headers(subtype), "", _base64(body.encode())]
    boundary = f"=_herald_{delivery['delivery_id']}"
    lines = [f'Content-Type: multipart/alternative; boundary="{boundary}"', ""]
    for subtype, body in parts:
        lines += [f"--{boundary}", *_part_headers(subtype), "", _base64(body.encode())]
    lines.append(f"--{boundary}--")
    return lines


def _attachment(attachment: Attachment) -> list[str]:
    data = attachment["content_base64"]
    if data is None:
        raise ValueError(f"attachment {attachment['filename']!r} was not fetched")
    content_type = attachment["content_type"]
    # Both checked by the request rules; a header must never carry a line break, whatever came in.
    _single_line("Content-Type", content_type)
    name = _parameter("name", attachment["filename"])
    filename = _parameter("filename", attachment["filename"])
    return [
        f"Content-Type: {content_type};{name}",
        f"Content-Disposition: attachment;{filename}",
        "Content-Transfer-Encoding: base64",
        "",
        # Decoded and encoded again: the result is clean base64 in lines of 76, whatever the input's shape.
        _base64(base64.b64decode(data, validate=True)),
    ]


def _parameter(name: str, value: str) -> str:
    """`` name="value"`` for short plain ASCII, else RFC 2231's ``name*0*=utf-8''...`` continuations, folded."""
    if value.isascii() and value.isprintable() and len(value) <= MAX_PLAIN_FILENAME:
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f' {name}="{escaped}"'
    encoded = quote(value, safe=_ATTRIBUTE_CHARS)
    pieces: list[str] = []
    while encoded:
        # Never split a %XX escape between two pieces.
        end = min(RFC2231_PIECE, len(encoded))
        while "%" in encoded[max(0, end - 2) : end] and end < len(encoded):
            end -= 1
        pieces.append(encoded[:end])
        encoded = encoded[end:]
    charset = "utf-8''"
    return ";".join(f"{CRLF} {name}*{i}*={charset if i == 0 else ''}{piece}" for i, piece in enumerate(pieces))


def _part_headers(subtype: str) -> list[str]:
    return [f'Content-Type: text/{subtype}; charset="utf-8"', "Content-Transfer-Encoding: base64"]


def _base64(data: bytes) -> str:
    # encodebytes wraps at 76 characters with "\n"; SMTP wants CRLF.
    return base64.encodebytes(data).decode("ascii").replace("\n", CRLF).rstrip(CRLF)


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
