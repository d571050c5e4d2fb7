"""Stored templates through every service: a notification naming one arrives rendered at the SMTP server."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.conftest import Pipeline
from tests.e2e.test_pipeline import kafka_client, unique_address

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

TEMPLATES = "/api/v1/templates"


def email_template(version: str) -> dict[str, object]:
    return {
        "name": "Order shipped",
        "channels": {
            "email": {
                "subject": f"{version}: order {{{{ order }}}} shipped",
                "text": "Hi {{ name }}, order {{ order }} is on its way.",
                "html": "<p>Hi {{ name }}, order {{ order }} is on its way.</p>",
            }
        },
        "variables": {"name": {}, "order": {}},
    }


async def test_a_notification_naming_a_stored_template_arrives_rendered(pipeline: Pipeline) -> None:
    template_id = f"shipped-{uuid.uuid4().hex[:8]}"
    latest, pinned = unique_address(), unique_address()
    variables = {"name": "<b>Ada</b>", "order": "A-1001"}
    async with pipeline.client() as client:
        created = await client.post(TEMPLATES, json={"id": template_id, **email_template("v1")})
        assert created.status_code == 201, created.text
        updated = await client.put(f"{TEMPLATES}/{template_id}", json=email_template("v2"))
        assert updated.json()["version"] == 2
        ids = []
        for address, ref in ((latest, {"id": template_id}), (pinned, {"id": template_id, "version": 1})):
            body = {"channels": ["email"], "recipient": {"email": address}, "content": {"template": ref}}
            accepted = await client.post("/api/v1/notifications", json={**body, "variables": variables})
            assert accepted.status_code == 202, accepted.text
            ids.append(accepted.json()["id"])

    mail = await pipeline.wait_for_mail(ids[0])
    assert (mail.rcpt_tos, mail.subject) == ((latest,), "v2: order A-1001 shipped")
    assert mail.text is not None
    assert "Hi <b>Ada</b>, order A-1001 is on its way." in mail.text
    assert mail.html is not None
    assert "Hi &lt;b&gt;Ada&lt;/b&gt;, order A-1001" in mail.html
    assert (await pipeline.wait_for_mail(ids[1])).subject == "v1: order A-1001 shipped"
    await pipeline.wait_for_status(ids[0], "sent")


async def test_a_recipient_gets_the_variant_of_their_locale(pipeline: Pipeline) -> None:
    template_id = f"shipped-{uuid.uuid4().hex[:8]}"
    french = {"email": {"subject": "Commande {{ order }} expédiée", "text": "Bonjour {{ name }}."}}
    addresses = {"fr-CA": unique_address(), "de": unique_address()}
    async with pipeline.client() as client:
        body = {"id": template_id, **email_template("v1"), "locales": {"fr": french}}
        created = await client.post(TEMPLATES, json=body)
        assert created.status_code == 201, created.text
        ids = {}
        for locale, address in addresses.items():
            accepted = await client.post(
                "/api/v1/notifications",
                json={
                    "channels": ["email"],
                    "recipient": {"email": address, "locale": locale},
                    "content": {"template": {"id": template_id}},
                    "variables": {"name": "Ada", "order": "A-1002"},
                },
            )
            assert accepted.status_code == 202, accepted.text
            ids[locale] = accepted.json()["id"]

    assert (await pipeline.wait_for_mail(ids["fr-CA"])).subject == "Commande A-1002 expédiée"
    assert (await pipeline.wait_for_mail(ids["de"])).subject == "v1: order A-1002 shipped"


async def test_a_request_naming_a_missing_template_fails_when_routed(pipeline: Pipeline) -> None:
    """Straight to Kafka, nothing checks the template before the router: it fails the notification."""
    async with kafka_client(pipeline) as herald:
        notification_id = await herald.send(
            channels=["email"], recipient={"email": unique_address()}, content={"template": {"id": "no-such-template"}}
        )
    failed = await pipeline.wait_for_status(notification_id, "failed")
    assert failed["last_reason"] == "invalid_payload"
    assert "template 'no-such-template' does not exist" in failed["last_detail"]
