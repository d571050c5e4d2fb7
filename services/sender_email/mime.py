"""Building the MIME bytes of an email.

Uses the ``compat32`` classes of the standard library's ``email`` package rather than
``EmailMessage``: the modern policy folds and re-parses every header and costs several times more
per message, which caps a sender core at a few hundred mails a second.
"""

from __future__ import annotations

from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.mime.text import MIMEText
from email.utils import formatdate

from shared.messages import EmailDelivery


def build_message(delivery: EmailDelivery, sender: str) -> bytes:
    """The complete message: text and/or html part, a stable Message-ID per delivery."""
    parts = [
        MIMEText(body, subtype, "utf-8")
        for body, subtype in ((delivery["text"], "plain"), (delivery["html"], "html"))
        if body
    ]
    message: MIMENonMultipart | MIMEMultipart
    if len(parts) == 1:
        message = parts[0]
    else:
        message = MIMEMultipart("alternative")
        for part in parts:
            message.attach(part)
    subject = delivery["subject"]
    message["Subject"] = subject if subject.isascii() else Header(subject, "utf-8").encode()
    message["From"] = sender
    message["To"] = delivery["to"]
    message["Date"] = formatdate(localtime=False, usegmt=True)
    # The same delivery always has the same Message-ID, so a receiving system can spot a duplicate.
    message["Message-ID"] = f"<{delivery['delivery_id']}@herald>"
    message["X-Herald-Notification-Id"] = delivery["notification_id"]
    return message.as_bytes()
