"""Recipients and their preferences through the API and the repository, and the router's use of
them, on real Postgres."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from fastapi.testclient import TestClient

from services.gateway.api_keys.repository import ApiKeyRepository
from services.router.handlers import RouterHandler, with_batch_lookups
from shared.kafka.records import Consumed, Produce, Reject
from shared.messages import EMAIL_DELIVERY, RoutableNotification
from shared.status_events import StatusReporter
from shared.storage.database import Pool, create_pool
from shared.storage.devices import DeviceRepository
from shared.storage.recipients import Contact, Preference, RecipientRepository
from shared.storage.suppressions import Suppression, SuppressionRepository
from shared.templates import TemplateRenderer
from shared.topics import Topics
from tests.conftest import ENCRYPTOR
from tests.integration.conftest import assert_problem, auth
from tests.integration.test_callbacks import routable

pytestmark = pytest.mark.integration

RECIPIENTS = "/api/v1/recipients"
ADA = f"{RECIPIENTS}/ada"
OTHER_KEY = "globex-key-0123456789abcdef"
VIEWER_KEY = "dev-viewer-key-0123456789abcdef"
CONTACT = {"email": "ada@example.com", "phone": "+44 20 7946 0958", "locale": "en-GB", "timezone": "Europe/London"}


async def _create_keys(database_url: str) -> None:
    pool = await create_pool(database_url, 1)
    try:
        keys = ApiKeyRepository(pool)
        await keys.ensure_tenant("globex", "Globex")
        await keys.create_key("globex", "globex key", OTHER_KEY)
        await keys.create_key("dev", "viewer", VIEWER_KEY, role="viewer")
    finally:
        await pool.close()


@pytest.fixture
def keys(client: TestClient, database_url: str) -> None:
    """Another tenant's admin key and a viewer key of the test tenant."""
    asyncio.run(_create_keys(database_url))


def _rows(database_url: str, query: str) -> list[asyncpg.Record]:
    async def fetch() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(database_url)
        try:
            return await connection.fetch(query)
        finally:
            await connection.close()

    return asyncio.run(fetch())


def test_a_recipient_is_created_read_replaced_and_listed(client: TestClient) -> None:
    created = client.put(ADA, json=CONTACT, headers=auth())
    assert created.status_code == 201, created.text
    body = created.json()
    assert {k: body[k] for k in ("user_id", "email", "phone", "locale", "timezone")} == {
        "user_id": "ada",
        "email": "ada@example.com",
        "phone": "+442079460958",  # normalised to E.164
        "locale": "en-GB",
        "timezone": "Europe/London",
    }
    assert body["links"] == {"self": ADA, "preferences": f"{ADA}/preferences", "devices": f"{ADA}/devices"}
    assert client.get(ADA, headers=auth()).json() == body

    # A replacement: what it leaves out is no longer known.
    replaced = client.put(ADA, json={"email": "ada@example.org"}, headers=auth())
    assert replaced.status_code == 200, replaced.text
    assert (replaced.json()["email"], replaced.json()["phone"], replaced.json()["created_at"]) == (
        "ada@example.org",
        None,
        body["created_at"],
    )
    assert [item["user_id"] for item in client.get(RECIPIENTS, headers=auth()).json()["items"]] == ["ada"]


def test_the_listing_is_newest_first_a_keyset_page_at_a_time(client: TestClient) -> None:
    for user_id in ("u1", "u2", "u3"):
        assert client.put(f"{RECIPIENTS}/{user_id}", json={}, headers=auth()).status_code == 201
    first = client.get(RECIPIENTS, params={"limit": 2}, headers=auth()).json()
    assert [item["user_id"] for item in first["items"]] == ["u3", "u2"]
    second = client.get(first["links"]["next"], headers=auth()).json()
    assert ([item["user_id"] for item in second["items"]], second["links"]["next"]) == (["u1"], None)
    problem = assert_problem(client.get(RECIPIENTS, params={"cursor": "nope"}, headers=auth()), 422)
    assert problem["errors"][0]["pointer"] == "#/query/cursor"


@pytest.mark.parametrize(
    ("payload", "pointer"),
    [
        ({"email": "not-an-address"}, "#/email"),
        ({"phone": "12"}, "#/phone"),
        ({"phone": "+1 415 555 0100 ext. 12"}, "#/phone"),
        ({"timezone": "Mars/Olympus_Mons"}, "#/timezone"),
        ({"timezone": "../../etc/passwd"}, "#/timezone"),
        ({"locale": ""}, "#/locale"),
        ({"locale": "en\x00"}, "#/locale"),
        ({"colour": "blue"}, "#/colour"),
    ],
)
def test_invalid_contact_details_are_refused_naming_the_field(
    client: TestClient, payload: dict[str, str], pointer: str
) -> None:
    problem = assert_problem(client.put(ADA, json=payload, headers=auth()), 422)
    assert [error["pointer"] for error in problem["errors"]] == [pointer]
    assert_problem(client.get(ADA, headers=auth()), 404)


def test_preferences_are_replaced_whole_and_set_one_at_a_time(client: TestClient) -> None:
    assert_problem(client.get(f"{ADA}/preferences", headers=auth()), 404)
    rule = {"category": "marketing", "channel": "email", "enabled": False}
    assert_problem(client.put(f"{ADA}/preferences", json={"preferences": [rule]}, headers=auth()), 404)
    client.put(ADA, json=CONTACT, headers=auth())
    assert client.get(f"{ADA}/preferences", headers=auth()).json() == {"user_id": "ada", "preferences": []}

    rules = [rule, {"category": "*", "channel": "sms", "enabled": False}]
    replaced = client.put(f"{ADA}/preferences", json={"preferences": rules}, headers=auth())
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["preferences"] == sorted(rules, key=lambda r: (r["category"], r["channel"]))

    patched = client.patch(f"{ADA}/preferences", json={**rule, "enabled": True}, headers=auth())
    assert patched.status_code == 200, patched.text
    assert patched.json()["preferences"] == [
        {"category": "*", "channel": "sms", "enabled": False},
        {"category": "marketing", "channel": "email", "enabled": True},
    ]
    assert client.get(f"{ADA}/preferences", headers=auth()).json() == patched.json()

    emptied = client.put(f"{ADA}/preferences", json={"preferences": []}, headers=auth())
    assert emptied.json()["preferences"] == []


@pytest.mark.parametrize(
    ("preferences", "pointer"),
    [
        ([{"category": "marketing", "channel": "fax", "enabled": False}], "#/preferences/0/channel"),
        ([{"category": "no spaces", "channel": "email", "enabled": False}], "#/preferences/0/category"),
        ([{"category": "news", "channel": "email"}], "#/preferences/0/enabled"),
        (
            [
                {"category": "news", "channel": "email", "enabled": False},
                {"category": "news", "channel": "email", "enabled": True},
            ],
            "#/preferences",
        ),
    ],
)
def test_invalid_preferences_are_refused_naming_the_field(
    client: TestClient, preferences: list[dict[str, Any]], pointer: str
) -> None:
    client.put(ADA, json=CONTACT, headers=auth())
    problem = assert_problem(client.put(f"{ADA}/preferences", json={"preferences": preferences}, headers=auth()), 422)
    assert [error["pointer"] for error in problem["errors"]] == [pointer]


def test_a_deleted_recipient_is_hidden_kept_and_comes_back_with_its_preferences(
    client: TestClient, database_url: str
) -> None:
    client.put(ADA, json=CONTACT, headers=auth())
    rule = {"category": "marketing", "channel": "email", "enabled": False}
    client.put(f"{ADA}/preferences", json={"preferences": [rule]}, headers=auth())

    assert client.delete(ADA, headers=auth()).status_code == 204
    assert_problem(client.get(ADA, headers=auth()), 404)
    assert_problem(client.get(f"{ADA}/preferences", headers=auth()), 404)
    assert_problem(client.patch(f"{ADA}/preferences", json=rule, headers=auth()), 404)
    assert client.get(RECIPIENTS, headers=auth()).json()["items"] == []
    assert_problem(client.delete(ADA, headers=auth()), 404)
    (row,) = _rows(database_url, "SELECT deleted_at FROM recipients")
    assert row["deleted_at"] is not None

    again = client.put(ADA, json={"email": "ada@example.com"}, headers=auth())
    assert again.status_code == 201, again.text
    assert client.get(f"{ADA}/preferences", headers=auth()).json()["preferences"] == [rule]


def test_recipients_stay_within_their_tenant_and_roles_apply(client: TestClient, keys: None) -> None:
    client.put(ADA, json=CONTACT, headers=auth())
    other = auth(OTHER_KEY)
    assert_problem(client.get(ADA, headers=other), 404)
    assert_problem(client.get(f"{ADA}/preferences", headers=other), 404)
    assert_problem(client.put(f"{ADA}/preferences", json={"preferences": []}, headers=other), 404)
    assert_problem(client.delete(ADA, headers=other), 404)
    assert client.get(RECIPIENTS, headers=other).json()["items"] == []
    # The same user id in another tenant is another recipient.
    assert client.put(ADA, json={"email": "ada@globex.example"}, headers=other).status_code == 201
    assert client.get(ADA, headers=auth()).json()["email"] == "ada@example.com"

    viewer = auth(VIEWER_KEY)
    assert client.get(ADA, headers=viewer).status_code == 200
    assert_problem(client.put(ADA, json=CONTACT, headers=viewer), 403)
    assert_problem(client.delete(ADA, headers=viewer), 403)


def test_a_repeated_put_with_its_idempotency_key_is_replayed(client: TestClient) -> None:
    headers = {**auth(), "Idempotency-Key": "put-ada-1"}
    first = client.put(ADA, json=CONTACT, headers=headers)
    again = client.put(ADA, json=CONTACT, headers=headers)
    assert (first.status_code, again.status_code, again.headers.get("Idempotent-Replayed")) == (201, 201, "true")
    assert again.json() == first.json()


def test_postgres_holds_no_clear_email_or_phone(client: TestClient, database_url: str) -> None:
    client.put(ADA, json=CONTACT, headers=auth())
    (row,) = _rows(database_url, "SELECT * FROM recipients")
    dump = b"|".join(v if isinstance(v, bytes) else str(v).encode() for v in row.values())
    for plaintext in (b"ada@example.com", b"+442079460958", b"2079460958"):
        assert plaintext not in dump
    assert row["email_sealed"] is not None
    assert row["phone_sealed"] is not None


async def test_routing_finds_many_users_profiles_and_preferences_in_one_query(db_pool: Pool) -> None:
    recipients = RecipientRepository(db_pool, ENCRYPTOR)
    await recipients.put("acme", "ada", Contact(email="ada@example.com", locale="fr"))
    await recipients.put("acme", "bob", Contact(phone="+442079460958"))
    await recipients.put("acme", "gone", Contact(email="gone@example.com"))
    await recipients.put("globex", "ada", Contact(email="ada@globex.example"))
    rules = [Preference("marketing", "email", False), Preference("*", "*", True)]
    assert await recipients.replace_preferences("acme", "ada", rules) == sorted(
        rules, key=lambda p: (p.category, p.channel)
    )
    assert await recipients.delete("acme", "gone")

    found = await recipients.for_routing({("acme", "ada"), ("acme", "bob"), ("acme", "gone"), ("acme", "nobody")})

    assert set(found) == {("acme", "ada"), ("acme", "bob")}
    ada, bob = found["acme", "ada"], found["acme", "bob"]
    assert (ada.profile.contact.email, ada.profile.contact.locale, list(ada.preferences)) == (
        "ada@example.com",
        "fr",
        [Preference("*", "*", True), Preference("marketing", "email", False)],
    )
    assert (bob.profile.contact.phone, list(bob.preferences)) == ("+442079460958", [])
    assert await recipients.for_routing(set()) == {}


def routed(user_id: str, category: str | None = None) -> Consumed[RoutableNotification]:
    """An email addressed by user id alone, in ``category``."""
    message = routable("acme", "email", {"user_id": user_id})
    if category is not None:
        message.value["metadata"]["category"] = category
    return message


async def test_the_router_uses_stored_addresses_preferences_and_suppressions(db_pool: Pool) -> None:
    recipients = RecipientRepository(db_pool, ENCRYPTOR)
    suppressions = SuppressionRepository(db_pool, ENCRYPTOR)
    await recipients.put("acme", "ada", Contact(email="ada@example.com"))
    await recipients.put("acme", "bob", Contact(email="bounced@example.com"))
    await recipients.put("acme", "eve", Contact(email="eve@example.com"))
    await recipients.replace_preferences("acme", "eve", [Preference("marketing", "*", False)])
    await suppressions.add([Suppression("acme", "email", "bounced@example.com", "bounced")])
    topics = Topics("t")
    handler = RouterHandler(
        renderer=TemplateRenderer(), reporter=StatusReporter(topics.status, "router"), topics=topics
    )
    handle = with_batch_lookups(handler, DeviceRepository(db_pool, ENCRYPTOR), suppressions, recipients)
    batch = [
        routed("ada"),
        routed("bob"),  # the stored address is suppressed
        routed("eve", "marketing"),
        routed("eve", "receipts"),
    ]

    outputs = await handle(batch)

    rejected = {o.message.value["notification_id"]: o.reason for o in outputs if isinstance(o, Reject)}
    assert rejected == {
        batch[1].value["notification_id"]: "recipient_suppressed",
        batch[2].value["notification_id"]: "recipient_opted_out",
    }
    sent = [
        EMAIL_DELIVERY.decode(o.value) for o in outputs if isinstance(o, Produce) and o.topic == topics.send("email")
    ]
    assert [(d["notification_id"], d["to"]) for d in sent] == [
        (batch[0].value["notification_id"], "ada@example.com"),
        (batch[3].value["notification_id"], "eve@example.com"),
    ]
