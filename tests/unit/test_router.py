"""The router's handler: one routable notification in, a rendered delivery (or a failure) out."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest

from services.router.handlers import RouterHandler, delivery_id_for
from shared.errors import DeadLetterReason
from shared.kafka.records import Consumed, Produce, Reject
from shared.messages import (
    EMAIL_DELIVERY,
    PUSH_DELIVERY,
    ROUTABLE_NOTIFICATION,
    SMS_DELIVERY,
    STATUS_EVENT,
    RoutableNotification,
)
from shared.status_events import StatusReporter
from shared.storage.devices import Device, Platform
from shared.storage.recipients import Contact, Preference, Profile, StoredRecipient
from shared.storage.templates import TemplateRef, TemplateVersion
from shared.templates import TemplateRenderer
from shared.topics import Topics

pytestmark = pytest.mark.unit

TOPICS = Topics("unit")


def routable(subject: str, variables: dict[str, object]) -> Consumed[RoutableNotification]:
    value: RoutableNotification = {
        "notification_id": "6f1c1f4e-3a9b-4d7e-9d8b-2b1f5c7e9a10",
        "tenant_id": "acme",
        "accepted_at": datetime.now(UTC),
        "priority": "high",
        "channels": ["email"],
        "recipient": {"user_id": None, "email": "ada@example.com", "phone": None, "locale": None, "webhook_url": None},
        "content": {
            "subject": subject,
            "text": "Hi {{ name }}",
            "html": "<p>{{ name }}</p>",
            "attachments": [],
            "provider_templates": {},
            "template": None,
        },
        "variables_json": orjson.dumps(variables).decode(),
        "metadata": {"campaign": "welcome"},
        "tracking": {"opens": False, "clicks": False},
    }
    return Consumed(TOPICS.routable, 0, 7, b"acme:ada", value, ROUTABLE_NOTIFICATION.encode(value))


@pytest.fixture
def handler() -> RouterHandler:
    return RouterHandler(renderer=TemplateRenderer(), reporter=StatusReporter(TOPICS.status, "router"), topics=TOPICS)


async def test_renders_the_delivery_for_the_chosen_channel(handler: RouterHandler) -> None:
    message = routable("Welcome {{ name }}", {"name": "<i>Ada</i>"})
    delivery_record, status_record = await handler(message)
    assert isinstance(delivery_record, Produce)
    assert isinstance(status_record, Produce)
    assert delivery_record.topic == TOPICS.send_for("email", "high")
    assert delivery_record.key == b"acme:ada"
    delivery = EMAIL_DELIVERY.decode(delivery_record.value)
    assert delivery["delivery_id"] == delivery_id_for(message.value["notification_id"], "email")
    assert (delivery["to"], delivery["subject"], delivery["text"]) == (
        "ada@example.com",
        "Welcome <i>Ada</i>",
        "Hi <i>Ada</i>",
    )
    assert delivery["html"] == "<p>&lt;i&gt;Ada&lt;/i&gt;</p>"
    assert (delivery["priority"], delivery["metadata"], delivery["attempt"]) == ("high", {"campaign": "welcome"}, 1)
    assert STATUS_EVENT.decode(status_record.value)["status"] == "routed"


async def test_a_subject_that_renders_to_several_lines_fails_the_notification(handler: RouterHandler) -> None:
    reject, status_record = await handler(routable("Hello {{ name }}", {"name": "Ada\r\nBcc: evil@example.com"}))
    assert isinstance(reject, Reject)
    assert isinstance(status_record, Produce)
    assert reject.reason == DeadLetterReason.INVALID_PAYLOAD
    event = STATUS_EVENT.decode(status_record.value)
    assert (event["status"], event["reason"]) == ("failed", "invalid_payload")
    assert "single line" in (event["detail"] or "")


async def test_a_missing_variable_fails_the_notification_naming_the_field(handler: RouterHandler) -> None:
    reject, _ = await handler(routable("Hello {{ nobody }}", {"name": "Ada"}))
    assert isinstance(reject, Reject)
    assert reject.detail.startswith("content/subject")


async def test_an_sms_is_rendered_as_text_to_the_e164_number(handler: RouterHandler) -> None:
    message = routable("unused for sms", {"name": "<i>Ada</i>"})
    message.value["channels"] = ["sms"]
    message.value["recipient"]["phone"] = "+44 20 7946 0958"
    delivery_record, status_record = await handler(message)
    assert isinstance(delivery_record, Produce)
    assert isinstance(status_record, Produce)
    assert delivery_record.topic == TOPICS.send_for("sms", "high")
    delivery = SMS_DELIVERY.decode(delivery_record.value)
    assert (delivery["to"], delivery["body"]) == ("+442079460958", "Hi <i>Ada</i>")
    assert delivery["delivery_id"] == delivery_id_for(message.value["notification_id"], "sms")
    assert STATUS_EVENT.decode(status_record.value)["channel"] == "sms"


NOW = datetime(2026, 1, 1, tzinfo=UTC)


def devices(*platforms: Platform) -> list[Device]:
    return [Device(str(uuid.uuid4()), "u-1", p, f"token-{i}", None, None, NOW, NOW) for i, p in enumerate(platforms)]


def push_message() -> Consumed[RoutableNotification]:
    message = routable("Hello {{ name }}", {"name": "Ada"})
    message.value["channels"] = ["push", "email"]
    message.value["recipient"]["user_id"] = "u-1"
    return message


async def test_a_push_fans_out_to_every_active_device(handler: RouterHandler) -> None:
    message = push_message()
    targets = devices("android", "ios", "web")

    *deliveries, status_record = await handler(message, targets)

    assert all(isinstance(record, Produce) and record.topic == TOPICS.send_for("push", "high") for record in deliveries)
    decoded = [PUSH_DELIVERY.decode(record.value) for record in deliveries if isinstance(record, Produce)]
    assert [(d["platform"], d["token"]) for d in decoded] == [(t.platform, t.token) for t in targets]
    assert [d["delivery_id"] for d in decoded] == [
        delivery_id_for(message.value["notification_id"], "push", t.id) for t in targets
    ]
    assert {(d["title"], d["body"], d["deliveries"]) for d in decoded} == {("Hello Ada", "Hi Ada", 3)}
    assert decoded[0]["data"] == {"notification_id": message.value["notification_id"]}
    assert isinstance(status_record, Produce)
    routed = STATUS_EVENT.decode(status_record.value)
    assert (routed["status"], routed["channel"], routed["deliveries"]) == ("routed", "push", 3)


async def test_a_push_to_a_user_without_devices_takes_the_next_channel(handler: RouterHandler) -> None:
    delivery_record, _ = await handler(push_message(), [])
    assert isinstance(delivery_record, Produce)
    assert delivery_record.topic == TOPICS.send_for("email", "high")


async def test_a_push_only_request_without_devices_fails_to_the_dlq(handler: RouterHandler) -> None:
    message = push_message()
    message.value["channels"] = ["push"]
    reject, status_record = await handler(message, [])
    assert isinstance(reject, Reject)
    assert reject.reason == DeadLetterReason.INVALID_PAYLOAD
    assert "no active push device" in reject.detail
    assert isinstance(status_record, Produce)
    assert STATUS_EVENT.decode(status_record.value)["status"] == "failed"


@pytest.mark.parametrize(
    ("channel", "field", "address", "suppressed"),
    [
        ("email", "email", "Ada@Example.com", ("acme", "email", "ada@example.com")),
        ("sms", "phone", "+44 20 7946 0958", ("acme", "sms", "+442079460958")),
    ],
)
async def test_a_suppressed_address_fails_the_notification_with_recipient_suppressed(
    handler: RouterHandler, channel: str, field: str, address: str, suppressed: tuple[str, str, str]
) -> None:
    message = routable("Hello", {"name": "Ada"})
    message.value["channels"] = [channel]
    message.value["recipient"][field] = address  # type: ignore[literal-required]
    reject, status_record = await handler(message, (), {suppressed})
    assert isinstance(reject, Reject)
    assert reject.reason == DeadLetterReason.RECIPIENT_SUPPRESSED
    assert isinstance(status_record, Produce)
    event = STATUS_EVENT.decode(status_record.value)
    assert (event["status"], event["reason"], event["channel"]) == ("failed", "recipient_suppressed", channel)
    # The same address of another tenant is not suppressed.
    other = ("other", *suppressed[1:])
    delivery_record, _ = await handler(message, (), {other})
    assert isinstance(delivery_record, Produce)
    assert delivery_record.topic == TOPICS.send_for(channel, "high")


# --- stored templates -----------------------------------------------------------------------------


def stored_template(
    locales: dict[str, dict[str, dict[str, str | None]]] | None = None, **channels: dict[str, str | None]
) -> TemplateVersion:
    return TemplateVersion(
        tenant_id="acme",
        template_id="order-shipped",
        version=2,
        channels=channels,
        locales=locales or {},
        variables={"name": {}},
        created_at=NOW,
        created_by="api_key:k-1",
    )


def templated_message(channel: str, version: int | None = None) -> Consumed[RoutableNotification]:
    message = routable("unused", {"name": "<i>Ada</i>"})
    message.value["channels"] = [channel]
    message.value["recipient"]["phone"] = "+442079460958"
    message.value["content"].update({"subject": None, "text": None, "html": None})
    message.value["content"]["template"] = {"id": "order-shipped", "version": version}
    return message


async def test_a_stored_template_is_rendered_for_the_chosen_channel(handler: RouterHandler) -> None:
    template = stored_template(
        email={"subject": "Shipped, {{ name }}", "html": "<p>{{ name }}</p>"}, sms={"text": "SMS for {{ name }}"}
    )
    found: dict[TemplateRef, TemplateVersion] = {("acme", "order-shipped", None): template}

    email_record, _ = await handler(templated_message("email"), templates=found)
    sms_record, _ = await handler(templated_message("sms"), templates=found)

    assert isinstance(email_record, Produce)
    assert isinstance(sms_record, Produce)
    email = EMAIL_DELIVERY.decode(email_record.value)
    assert (email["subject"], email["text"], email["html"]) == (
        "Shipped, <i>Ada</i>",
        None,
        "<p>&lt;i&gt;Ada&lt;/i&gt;</p>",
    )
    assert SMS_DELIVERY.decode(sms_record.value)["body"] == "SMS for <i>Ada</i>"


@pytest.mark.parametrize(
    ("locale", "body"),
    [
        pytest.param("fr-CA", "Bonjour <i>Ada</i>", id="the-language-of-a-regional-locale"),
        pytest.param("pt-BR", "Olá <i>Ada</i>", id="the-regional-variant"),
        pytest.param("de", "Hi <i>Ada</i>", id="the-default-for-another-language"),
        pytest.param(None, "Hi <i>Ada</i>", id="the-default-without-a-locale"),
    ],
)
async def test_a_stored_template_is_rendered_in_the_recipients_locale(
    handler: RouterHandler, locale: str | None, body: str
) -> None:
    template = stored_template(
        sms={"text": "Hi {{ name }}"},
        locales={"fr": {"sms": {"text": "Bonjour {{ name }}"}}, "pt-BR": {"sms": {"text": "Olá {{ name }}"}}},
    )
    message = templated_message("sms")
    message.value["recipient"]["locale"] = locale

    record, _ = await handler(message, templates={("acme", "order-shipped", None): template})

    assert isinstance(record, Produce)
    assert SMS_DELIVERY.decode(record.value)["body"] == body


async def test_the_stored_profiles_locale_picks_the_variant(handler: RouterHandler) -> None:
    template = stored_template(sms={"text": "Hi {{ name }}"}, locales={"fr": {"sms": {"text": "Salut {{ name }}"}}})
    message = templated_message("sms")
    message.value["recipient"]["user_id"] = "ada"
    stored = StoredRecipient(Profile(str(uuid.uuid4()), "ada", Contact(locale="fr_CA"), NOW, NOW), ())

    record, _ = await handler(message, stored=stored, templates={("acme", "order-shipped", None): template})

    assert isinstance(record, Produce)
    assert SMS_DELIVERY.decode(record.value)["body"] == "Salut <i>Ada</i>"


@pytest.mark.parametrize(
    ("found", "version", "detail"),
    [
        pytest.param({}, None, "template 'order-shipped' does not exist or was deleted", id="missing"),
        pytest.param({}, 7, "template 'order-shipped' version 7 does not exist", id="missing-version"),
        pytest.param(
            {("acme", "order-shipped", None): stored_template(email={"subject": "Hi", "text": "Hi"})},
            None,
            "version 2 of template 'order-shipped' has no sms content",
            id="no-content-for-the-channel",
        ),
    ],
)
async def test_a_template_that_cannot_be_used_fails_the_notification(
    handler: RouterHandler, found: dict[TemplateRef, TemplateVersion], version: int | None, detail: str
) -> None:
    reject, status_record = await handler(templated_message("sms", version), templates=found)
    assert isinstance(reject, Reject)
    assert reject.reason == DeadLetterReason.INVALID_PAYLOAD
    assert detail in reject.detail
    assert isinstance(status_record, Produce)
    event = STATUS_EVENT.decode(status_record.value)
    assert (event["status"], event["reason"]) == ("failed", "invalid_payload")
    assert detail in (event["detail"] or "")


# --- stored recipients and preferences ------------------------------------------------------------


def stored_ada(*rules: Preference) -> StoredRecipient:
    contact = Contact(email="stored@example.com", phone="+442079460958")
    return StoredRecipient(Profile(str(uuid.uuid4()), "ada", contact, NOW, NOW), rules)


def by_user_id(channels: list[str], category: str) -> Consumed[RoutableNotification]:
    message = routable("Hello", {"name": "Ada"})
    message.value["channels"] = channels
    message.value["recipient"].update({"user_id": "ada", "email": None})
    message.value["metadata"]["category"] = category
    return message


async def test_a_channel_opted_out_of_gives_way_to_the_next_with_the_stored_address(handler: RouterHandler) -> None:
    stored = stored_ada(Preference("marketing", "email", False))
    delivery_record, _ = await handler(by_user_id(["email", "sms"], "marketing"), stored=stored)
    assert isinstance(delivery_record, Produce)
    assert SMS_DELIVERY.decode(delivery_record.value)["to"] == "+442079460958"

    delivery_record, _ = await handler(by_user_id(["email", "sms"], "receipts"), stored=stored)
    assert isinstance(delivery_record, Produce)
    assert EMAIL_DELIVERY.decode(delivery_record.value)["to"] == "stored@example.com"


async def test_opting_out_of_every_channel_fails_the_notification_unless_it_is_mandatory(
    handler: RouterHandler,
) -> None:
    stored = stored_ada(Preference("*", "*", False))
    reject, status_record = await handler(by_user_id(["email", "sms"], "security"), stored=stored)
    assert isinstance(reject, Reject)
    assert reject.reason == DeadLetterReason.RECIPIENT_OPTED_OUT
    assert isinstance(status_record, Produce)
    event = STATUS_EVENT.decode(status_record.value)
    assert (event["status"], event["reason"]) == ("failed", "recipient_opted_out")
    assert event["detail"] == "the recipient opted out of category 'security' on email, sms"

    mandatory = RouterHandler(
        renderer=TemplateRenderer(),
        reporter=StatusReporter(TOPICS.status, "router"),
        topics=TOPICS,
        mandatory_categories=["security"],
    )
    delivery_record, _ = await mandatory(by_user_id(["email", "sms"], "security"), stored=stored)
    assert isinstance(delivery_record, Produce)
    assert delivery_record.topic == TOPICS.send_for("email", "high")
