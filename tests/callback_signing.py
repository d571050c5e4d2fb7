"""Signing provider callbacks as the providers do, with keys generated per test: Twilio's HMAC of the URL
and form, SendGrid's ECDSA P-256 over timestamp and body, SNS's RSA signature with its certificate."""

from __future__ import annotations

import base64
import datetime
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from twilio.request_validator import RequestValidator

from services.gateway.callbacks.sns import string_to_sign

TWILIO_TOKEN = "0123456789abcdef0123456789abcdef"
TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:herald-ses-feedback"


def twilio_signature(url: str, form: dict[str, str], token: str = TWILIO_TOKEN) -> str:
    """``X-Twilio-Signature`` as Twilio computes it (the SDK's own function)."""
    return str(RequestValidator(token).compute_signature(url, form))


def twilio_form(status: str, *, error_code: str | None = None, to: str = "+14155550100") -> dict[str, str]:
    """A status callback's form fields, as Twilio posts them."""
    form = {
        "AccountSid": "AC" + "0" * 32,
        "ApiVersion": "2010-04-01",
        "From": "+15005550006",
        "MessageSid": "SM" + uuid.uuid4().hex,
        "MessageStatus": status,
        "SmsSid": "SM" + uuid.uuid4().hex,
        "SmsStatus": status,
        "To": to,
    }
    if error_code:
        form["ErrorCode"] = error_code
    return form


@dataclass
class SendGridSigner:
    """An Event Webhook signing key: the public half is what SendGrid shows as the verification key."""

    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    @property
    def public_key(self) -> str:
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: str | None = None) -> dict[str, str]:
        timestamp = timestamp or str(int(time.time()))
        signature = self.key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            "Content-Type": "application/json",
        }


def sendgrid_event(kind: str, ids: dict[str, str], email: str = "ada@example.com", **extra: Any) -> dict[str, Any]:
    """One Event Webhook event with the mail's custom_args at the top level, as SendGrid posts it."""
    return {
        "email": email,
        "timestamp": int(time.time()),
        "event": kind,
        "sg_event_id": uuid.uuid4().hex,
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        **ids,
        **extra,
    }


@dataclass
class SnsSigner:
    """SNS's signing key and certificate (self-signed: SNS's trust comes from the HTTPS host serving it)."""

    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))

    @property
    def certificate_pem(self) -> bytes:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(self.key, hashes.SHA256())
        )
        return certificate.public_bytes(serialization.Encoding.PEM)

    def sign(self, message: dict[str, Any], version: str = "1") -> dict[str, Any]:
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(string_to_sign(message), padding.PKCS1v15(), algorithm)
        return {**message, "SignatureVersion": version, "Signature": base64.b64encode(signature).decode()}


def sns_notification(ses_message: dict[str, Any], cert_url: str, topic_arn: str = TOPIC_ARN) -> dict[str, Any]:
    """An SNS Notification envelope around an SES notification (unsigned)."""
    return {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": topic_arn,
        "Message": json.dumps(ses_message),
        "Timestamp": "2026-11-25T12:00:00.000Z",
        "SigningCertURL": cert_url,
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
    }


def sns_subscription_confirmation(subscribe_url: str, cert_url: str, topic_arn: str = TOPIC_ARN) -> dict[str, Any]:
    return {
        "Type": "SubscriptionConfirmation",
        "MessageId": str(uuid.uuid4()),
        "Token": uuid.uuid4().hex,
        "TopicArn": topic_arn,
        "Message": f"You have chosen to subscribe to the topic {topic_arn}.",
        "SubscribeURL": subscribe_url,
        "Timestamp": "2026-11-25T12:00:00.000Z",
        "SigningCertURL": cert_url,
    }


def ses_tags(ids: dict[str, str]) -> dict[str, list[str]]:
    return {name: [value] for name, value in ids.items()}


def ses_bounce(ids: dict[str, str], address: str, bounce_type: str = "Permanent") -> dict[str, Any]:
    """SES's bounce notification for a mail Herald sent (its tags carry Herald's ids)."""
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [
                {"emailAddress": address, "action": "failed", "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1"}
            ],
            "timestamp": "2026-11-25T12:00:00.000Z",
            "feedbackId": uuid.uuid4().hex,
        },
        "mail": {"messageId": uuid.uuid4().hex, "destination": [address], "tags": ses_tags(ids)},
    }


def ses_complaint(ids: dict[str, str], address: str) -> dict[str, Any]:
    return {
        "eventType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": address}],
            "complaintFeedbackType": "abuse",
            "timestamp": "2026-11-25T12:00:00.000Z",
            "feedbackId": uuid.uuid4().hex,
        },
        "mail": {"messageId": uuid.uuid4().hex, "destination": [address], "tags": ses_tags(ids)},
    }


def herald_ids(tenant_id: str) -> dict[str, str]:
    return {"notification_id": str(uuid.uuid4()), "delivery_id": str(uuid.uuid4()), "tenant_id": tenant_id}
