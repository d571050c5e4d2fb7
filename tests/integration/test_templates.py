"""Stored templates on the real gateway and Postgres: CRUD, versions, preview escaping, soft delete,
tenant isolation, and notifications that name a template."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from fastapi.testclient import TestClient

from shared.storage.database import Pool
from shared.storage.templates import TemplateRepository, VersionContent
from tests.integration.conftest import assert_problem, auth
from tests.integration.test_auth import create_key
from tests.integration.test_gateway_api import add_tenant_with_key

pytestmark = pytest.mark.integration

TEMPLATES = "/api/v1/templates"
NOTIFICATIONS = "/api/v1/notifications"
XSS = "<script>alert(1)</script>"


def template(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "id": "order-shipped",
        "name": "Order shipped",
        "channels": {
            "email": {"subject": "Order {{ order }} shipped", "html": "<p>Hi {{ name }}, order {{ order }}.</p>"},
            "sms": {"text": "Hi {{ name }}, order {{ order }} shipped."},
        },
        "variables": {"name": {"description": "First name", "sample": "Ada"}, "order": {"sample": "A-1"}},
    }
    value.update(overrides)
    return value


def create(client: TestClient, **overrides: Any) -> dict[str, Any]:
    response = client.post(TEMPLATES, json=template(**overrides), headers=auth())
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def update_body(**overrides: Any) -> dict[str, Any]:
    body = template(**overrides)
    del body["id"]
    return body


def notification(template_ref: dict[str, Any]) -> dict[str, Any]:
    return {
        "channels": ["email"],
        "recipient": {"email": "ada@example.com"},
        "content": {"template": template_ref},
        "variables": {"name": "Ada", "order": "A-1"},
    }


# --- create, read, update, versions ---------------------------------------------------------------


def test_a_template_is_created_read_and_listed(client: TestClient) -> None:
    created = create(client)
    assert created["id"] == "order-shipped"
    assert (created["version"], created["latest_version"]) == (1, 1)
    assert created["channels"]["sms"] == {"text": "Hi {{ name }}, order {{ order }} shipped."}
    assert created["version_created_by"].startswith("api_key:")
    assert created["links"] == {"self": f"{TEMPLATES}/order-shipped", "versions": f"{TEMPLATES}/order-shipped/versions"}

    assert client.get(f"{TEMPLATES}/order-shipped", headers=auth()).json() == created
    listed = client.get(TEMPLATES, headers=auth()).json()
    assert [item["id"] for item in listed["items"]] == ["order-shipped"]
    assert listed["links"]["next"] is None
    # The same id again is a conflict: PUT adds a version instead.
    assert_problem(client.post(TEMPLATES, json=template(), headers=auth()), 409)


def test_templates_are_listed_newest_first_a_page_at_a_time(client: TestClient) -> None:
    for name in ("first", "second", "third"):
        create(client, id=name)
    seen: list[str] = []
    url: str | None = f"{TEMPLATES}?limit=2"
    while url is not None:
        page = client.get(url, headers=auth()).json()
        seen += [item["id"] for item in page["items"]]
        url = page["links"]["next"]
    assert seen == ["third", "second", "first"]


def test_an_update_adds_a_version_and_old_versions_stay_readable(client: TestClient) -> None:
    create(client)
    changed = update_body(name="Shipped!", channels={"sms": {"text": "v2: {{ order }}"}})
    updated = client.put(f"{TEMPLATES}/order-shipped", json=changed, headers=auth())
    assert updated.status_code == 200, updated.text
    assert (updated.json()["version"], updated.json()["name"]) == (2, "Shipped!")

    latest = client.get(f"{TEMPLATES}/order-shipped", headers=auth()).json()
    assert (latest["version"], latest["channels"]) == (2, {"sms": {"text": "v2: {{ order }}"}})
    first = client.get(f"{TEMPLATES}/order-shipped/versions/1", headers=auth()).json()
    assert (first["version"], first["latest_version"]) == (1, 2)
    assert "email" in first["channels"]
    versions = client.get(f"{TEMPLATES}/order-shipped/versions", headers=auth()).json()
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[1]["links"]["self"] == f"{TEMPLATES}/order-shipped/versions/1"
    assert_problem(client.get(f"{TEMPLATES}/order-shipped/versions/3", headers=auth()), 404)
    assert_problem(client.put(f"{TEMPLATES}/nope", json=changed, headers=auth()), 404)


@pytest.mark.parametrize(
    ("overrides", "pointer"),
    [
        pytest.param(
            {"channels": {"email": {"subject": "Hi", "html": "<p>{{ name }} {{ coupon }}</p>"}}},
            "#/channels/email/html",
            id="undeclared-variable",
        ),
        pytest.param({"channels": {"sms": {"text": "{% if name %}"}}}, "#/channels/sms/text", id="syntax-error"),
        pytest.param({"channels": {"email": {"subject": "Hi"}}}, "#/channels/email", id="email-without-a-body"),
        pytest.param({"channels": {"webhook": {}}}, "#/channels/webhook", id="webhook-without-content"),
        pytest.param({"channels": {}}, "#/channels", id="no-channel"),
        pytest.param({"channels": {"fax": {"text": "Hi"}}}, "#/channels/fax", id="unknown-channel"),
        pytest.param({"id": "no spaces"}, "#/id", id="bad-id"),
        pytest.param({"variables": {"1st": {}}}, "#/variables/1st/[key]", id="bad-variable-name"),
        # Jinja2 would fold these at compile time: seconds of CPU and a 500 before the render limits.
        pytest.param({"channels": {"sms": {"text": "{{ 7**5000000 }}"}}}, "#/channels/sms/text", id="huge-power"),
        pytest.param(
            {
                "channels": {"sms": {"text": "{% for i in range(n) %}{% for j in range(n) %}{% endfor %}{% endfor %}"}},
                "variables": {"n": {"sample": 10000}},
            },
            "#/channels/sms/text",
            id="nested-loops-with-the-sample",
        ),
        pytest.param(
            {"locales": {"fr": {"email": {"subject": "Salut", "html": "{{ 'A' * 1100000 }}"}}}},
            "#/locales/fr/email/html",
            id="oversized-variant",
        ),
    ],
)
def test_an_invalid_template_is_refused_naming_the_field(
    client: TestClient, overrides: dict[str, Any], pointer: str
) -> None:
    problem = assert_problem(client.post(TEMPLATES, json=template(**overrides), headers=auth()), 422)
    assert problem["errors"][0]["pointer"] == pointer
    assert client.get(TEMPLATES, headers=auth()).json()["items"] == []


def test_a_viewer_reads_templates_but_cannot_change_them(client: TestClient) -> None:
    create(client)
    viewer = auth(create_key(client, "viewer")["secret"])
    assert client.get(f"{TEMPLATES}/order-shipped", headers=viewer).status_code == 200
    assert_problem(client.post(TEMPLATES, json=template(id="other"), headers=viewer), 403)
    assert_problem(client.delete(f"{TEMPLATES}/order-shipped", headers=viewer), 403)


def test_a_retried_create_with_the_same_idempotency_key_answers_the_same(client: TestClient) -> None:
    headers = {**auth(), "Idempotency-Key": "template-1"}
    first = client.post(TEMPLATES, json=template(), headers=headers)
    again = client.post(TEMPLATES, json=template(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()


# --- locales --------------------------------------------------------------------------------------

FRENCH = {"email": {"subject": "Commande {{ order }} expédiée", "html": "<p>Bonjour {{ name }}</p>"}}


def test_a_template_keeps_its_locales_by_canonical_tag(client: TestClient) -> None:
    created = create(client, locales={"fr": FRENCH, "pt-br": {"sms": {"text": "Olá {{ name }}"}}})
    assert created["locales"] == {
        "fr": {"email": {"subject": "Commande {{ order }} expédiée", "html": "<p>Bonjour {{ name }}</p>"}},
        "pt-BR": {"sms": {"text": "Olá {{ name }}"}},
    }
    assert client.get(f"{TEMPLATES}/order-shipped", headers=auth()).json()["locales"] == created["locales"]
    # A version without locales has none; the earlier version keeps its own.
    client.put(f"{TEMPLATES}/order-shipped", json=update_body(), headers=auth())
    assert client.get(f"{TEMPLATES}/order-shipped", headers=auth()).json()["locales"] == {}
    first = client.get(f"{TEMPLATES}/order-shipped/versions/1", headers=auth()).json()
    assert first["locales"] == created["locales"]


@pytest.mark.parametrize(
    ("locales", "pointer", "detail"),
    [
        pytest.param({"fr!": FRENCH}, "#/locales/fr!/[key]", "pattern", id="bad-tag"),
        pytest.param({"f": FRENCH}, "#/locales/f/[key]", "pattern", id="too-short"),
        pytest.param({"fr": FRENCH, "FR": FRENCH}, "#/locales", "same locale", id="same-tag-twice"),
        pytest.param(
            {f"l{chr(97 + n // 26)}{chr(97 + n % 26)}": {"sms": {"text": "Hi"}} for n in range(51)},
            "#/locales",
            "at most 50",
            id="too-many",
        ),
        pytest.param(
            {"fr": {"email": {"subject": "Hi", "html": "<p>{{ coupon }}</p>"}}},
            "#/locales/fr/email/html",
            "(coupon)",
            id="undeclared-variable",
        ),
        pytest.param(
            {"pt-br": {"sms": {"text": "{% if name %}"}}}, "#/locales/pt-BR/sms/text", "template error", id="syntax"
        ),
        pytest.param({"fr": {"email": {"subject": "Hi"}}}, "#/locales/fr/email", "body", id="email-without-a-body"),
        pytest.param({"fr": {"push": {"text": "Salut"}}}, "#/locales/fr/push", "no push content", id="new-channel"),
    ],
)
def test_an_invalid_locale_is_refused_naming_the_field(
    client: TestClient, locales: dict[str, Any], pointer: str, detail: str
) -> None:
    problem = assert_problem(client.post(TEMPLATES, json=template(locales=locales), headers=auth()), 422)
    assert problem["errors"][0]["pointer"] == pointer
    assert detail in problem["errors"][0]["detail"]
    assert client.get(TEMPLATES, headers=auth()).json()["items"] == []


def test_a_preview_renders_the_variant_a_locale_gets(client: TestClient) -> None:
    create(client, locales={"fr": FRENCH})

    def preview(**body: Any) -> dict[str, Any]:
        response = client.post(f"{TEMPLATES}/order-shipped/preview", json=body, headers=auth())
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    french = preview(channel="email", locale="fr-CA", variables={"name": XSS})
    assert (french["locale"], french["subject"]) == ("fr", "Commande A-1 expédiée")
    assert french["html"] == "<p>Bonjour &lt;script&gt;alert(1)&lt;/script&gt;</p>"
    # French has no sms: the default's; nor does German have anything.
    assert (preview(channel="sms", locale="fr-CA")["locale"], preview(channel="email", locale="de")["locale"]) == (
        None,
        None,
    )
    assert preview(channel="email")["subject"] == "Order A-1 shipped"
    problem = assert_problem(
        client.post(f"{TEMPLATES}/order-shipped/preview", json={"channel": "sms", "locale": "x!"}, headers=auth()),
        422,
    )
    assert problem["errors"][0]["pointer"] == "#/locale"


# --- preview --------------------------------------------------------------------------------------


def test_a_preview_escapes_html_and_falls_back_to_the_samples(client: TestClient) -> None:
    create(client)
    preview = client.post(
        f"{TEMPLATES}/order-shipped/preview", json={"channel": "email", "variables": {"name": XSS}}, headers=auth()
    )
    assert preview.status_code == 200, preview.text
    assert preview.json() == {
        "id": "order-shipped",
        "version": 1,
        "channel": "email",
        "locale": None,
        "subject": "Order A-1 shipped",
        "text": None,
        "html": "<p>Hi &lt;script&gt;alert(1)&lt;/script&gt;, order A-1.</p>",
    }
    # Text is not HTML: it comes out as given.
    sms = client.post(
        f"{TEMPLATES}/order-shipped/preview", json={"channel": "sms", "variables": {"name": XSS}}, headers=auth()
    )
    assert sms.json()["text"] == f"Hi {XSS}, order A-1 shipped."


@pytest.mark.parametrize(
    ("variables", "detail"),
    [
        pytest.param({"name": 10000}, "template too costly", id="over-the-render-limits"),
        pytest.param({"name": 0}, "ZeroDivisionError", id="runtime-error"),
    ],
)
def test_a_preview_that_cannot_render_is_a_problem_naming_the_source(
    client: TestClient, variables: dict[str, Any], detail: str
) -> None:
    """The samples render, a caller's values may not: a problem naming the source, never a 500."""
    source = "{% for i in range(name) %}{% for j in range(name) %}{% endfor %}{% endfor %}{{ 10 / name }}"
    create(client, channels={"sms": {"text": source}}, variables={"name": {"sample": 3}})
    response = client.post(
        f"{TEMPLATES}/order-shipped/preview", json={"channel": "sms", "variables": variables}, headers=auth()
    )
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["pointer"] == "#/channels/sms/text"
    assert detail in problem["errors"][0]["detail"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", f"{TEMPLATES}/order-shipped/preview", {"channel": "sms", "version": 10**30}),
        ("POST", f"{TEMPLATES}/order-shipped/preview", {"channel": "sms", "version": 2**31}),
        ("GET", f"{TEMPLATES}/order-shipped/versions/{10**30}", None),
        ("POST", NOTIFICATIONS, notification({"id": "order-shipped", "version": 10**30})),
    ],
)
def test_a_version_beyond_what_is_stored_is_a_problem_not_a_500(
    client: TestClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    create(client)
    assert_problem(client.request(method, path, json=body, headers=auth()), 422)


def test_a_preview_for_a_channel_the_template_lacks_is_refused(client: TestClient) -> None:
    create(client)
    problem = assert_problem(
        client.post(f"{TEMPLATES}/order-shipped/preview", json={"channel": "push"}, headers=auth()), 422
    )
    assert problem["errors"][0]["pointer"] == "#/channel"
    assert_problem(client.post(f"{TEMPLATES}/nope/preview", json={"channel": "sms"}, headers=auth()), 404)
    assert_problem(
        client.post(f"{TEMPLATES}/order-shipped/preview", json={"channel": "sms", "version": 2}, headers=auth()), 404
    )


# --- notifications naming a template --------------------------------------------------------------


def test_notifications_are_listed_by_the_template_they_name(client: TestClient) -> None:
    create(client)
    create(client, id="welcome")
    sent = [
        client.post(NOTIFICATIONS, json=notification({"id": t}), headers=auth()) for t in ("order-shipped", "welcome")
    ]
    inline = {
        "channels": ["email"],
        "recipient": {"email": "ada@example.com"},
        "content": {"subject": "S", "text": "T"},
    }
    assert client.post(NOTIFICATIONS, json=inline, headers=auth()).status_code == 202

    def listed(template_id: str) -> list[str]:
        response = client.get(NOTIFICATIONS, params={"template": template_id}, headers=auth())
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert listed("order-shipped") == [sent[0].json()["id"]]
    assert listed("welcome") == [sent[1].json()["id"]]
    assert listed("missing") == []


def test_a_notification_may_name_an_existing_template_only(client: TestClient) -> None:
    create(client)
    assert client.post(NOTIFICATIONS, json=notification({"id": "order-shipped"}), headers=auth()).status_code == 202
    pinned = notification({"id": "order-shipped", "version": 1})
    assert client.post(NOTIFICATIONS, json=pinned, headers=auth()).status_code == 202

    for ref in ({"id": "no-such-template"}, {"id": "order-shipped", "version": 9}):
        problem = assert_problem(client.post(NOTIFICATIONS, json=notification(ref), headers=auth()), 422)
        assert problem["errors"][0]["pointer"] == "#/content/template/id"
    both = notification({"id": "order-shipped"})
    both["content"]["subject"] = "Inline too"
    problem = assert_problem(client.post(NOTIFICATIONS, json=both, headers=auth()), 422)
    assert problem["errors"][0]["pointer"] == "#/content/template"


def test_a_notification_is_refused_when_its_template_has_content_for_none_of_its_channels(
    client: TestClient,
) -> None:
    create(client)  # email and sms content
    push_only = {**notification({"id": "order-shipped"}), "channels": ["push"], "recipient": {"user_id": "u-1"}}
    problem = assert_problem(client.post(NOTIFICATIONS, json=push_only, headers=auth()), 422)
    assert problem["errors"][0]["pointer"] == "#/channels"
    assert "has content for email, sms, none of push" in problem["detail"]
    # One channel it has content for is enough: routing may pick it.
    push_or_email = {**push_only, "channels": ["push", "email"], "recipient": {"user_id": "u-1", "email": "a@b.co"}}
    assert client.post(NOTIFICATIONS, json=push_or_email, headers=auth()).status_code == 202


def test_a_bulk_refuses_only_the_items_naming_no_template(client: TestClient) -> None:
    create(client)
    items = [
        notification({"id": "order-shipped"}),
        notification({"id": "missing"}),
        notification({"id": "order-shipped"}),
    ]
    response = client.post(f"{NOTIFICATIONS}/bulk", json={"notifications": items}, headers=auth())
    assert response.status_code == 200, response.text
    outcome = response.json()
    assert (outcome["accepted"], outcome["rejected"]) == (2, 1)
    assert [("id" in result, result["index"]) for result in outcome["results"]] == [(True, 0), (False, 1), (True, 2)]
    assert outcome["results"][1]["error"]["errors"][0]["pointer"] == "#/notifications/1/content/template/id"


# --- soft delete and tenants ----------------------------------------------------------------------


def test_a_deleted_template_is_gone_and_refused_and_its_id_can_be_reused(client: TestClient) -> None:
    create(client)
    client.put(f"{TEMPLATES}/order-shipped", json=update_body(), headers=auth())
    # Seen once, so a gateway that caches what exists must forget it on delete.
    assert client.post(NOTIFICATIONS, json=notification({"id": "order-shipped"}), headers=auth()).status_code == 202

    assert client.delete(f"{TEMPLATES}/order-shipped", headers=auth()).status_code == 204

    assert_problem(client.get(f"{TEMPLATES}/order-shipped", headers=auth()), 404)
    assert_problem(client.get(f"{TEMPLATES}/order-shipped/versions", headers=auth()), 404)
    assert_problem(client.get(f"{TEMPLATES}/order-shipped/versions/1", headers=auth()), 404)
    assert_problem(client.delete(f"{TEMPLATES}/order-shipped", headers=auth()), 404)
    assert client.get(TEMPLATES, headers=auth()).json()["items"] == []
    problem = assert_problem(
        client.post(NOTIFICATIONS, json=notification({"id": "order-shipped"}), headers=auth()), 422
    )
    assert problem["errors"][0]["pointer"] == "#/content/template/id"

    # Created again, it numbers on: version 1 still means what it meant.
    again = create(client)
    assert (again["version"], again["latest_version"]) == (3, 3)


def test_another_tenant_cannot_see_use_or_change_a_template(client: TestClient, database_url: str) -> None:
    create(client)
    other_secret = "globex-key-0123456789abcdef"
    asyncio.run(add_tenant_with_key(database_url, "globex", other_secret))
    other = auth(other_secret)

    assert_problem(client.get(f"{TEMPLATES}/order-shipped", headers=other), 404)
    assert_problem(client.get(f"{TEMPLATES}/order-shipped/versions/1", headers=other), 404)
    assert_problem(client.put(f"{TEMPLATES}/order-shipped", json=update_body(), headers=other), 404)
    assert_problem(client.post(f"{TEMPLATES}/order-shipped/preview", json={"channel": "sms"}, headers=other), 404)
    assert_problem(client.delete(f"{TEMPLATES}/order-shipped", headers=other), 404)
    assert client.get(TEMPLATES, headers=other).json()["items"] == []
    assert_problem(client.post(NOTIFICATIONS, json=notification({"id": "order-shipped"}), headers=other), 422)
    # The other tenant may use the same id for its own template.
    assert client.post(TEMPLATES, json=template(), headers=other).status_code == 201
    assert client.get(f"{TEMPLATES}/order-shipped", headers=auth()).json()["latest_version"] == 1


# --- the repository -------------------------------------------------------------------------------

CONTENT = VersionContent({"sms": {"text": "v{{ n }}"}}, {"n": {}}, {"fr": {"sms": {"text": "fr{{ n }}"}}})


async def test_the_router_lookup_finds_latest_and_pinned_versions_of_live_templates_only(db_pool: Pool) -> None:
    templates = TemplateRepository(db_pool)
    for tenant in ("acme", "globex"):
        await templates.create(tenant, "t", name="T", description=None, content=CONTENT, created_by="test")
    await templates.add_version("acme", "t", name="T", description=None, content=CONTENT, created_by="test")
    await templates.create("acme", "gone", name="G", description=None, content=CONTENT, created_by="test")
    await templates.delete("acme", "gone")

    asked = {("acme", "t", None), ("acme", "t", 1), ("acme", "t", 3), ("acme", "gone", None), ("acme", "nope", None)}
    found = await templates.versions_for(asked)

    assert {ref: version.version for ref, version in found.items()} == {("acme", "t", None): 2, ("acme", "t", 1): 1}
    assert found["acme", "t", None].channels == {"sms": {"text": "v{{ n }}"}}
    assert found["acme", "t", None].locales == {"fr": {"sms": {"text": "fr{{ n }}"}}}
    assert await templates.versions_for(set()) == {}


async def test_a_version_cannot_be_changed_once_written(db_pool: Pool) -> None:
    await TemplateRepository(db_pool).create(
        "acme", "t", name="T", description=None, content=CONTENT, created_by="test"
    )
    with pytest.raises(asyncpg.RaiseError, match="immutable"):
        await db_pool.execute("UPDATE template_versions SET channels = '{}' WHERE tenant_id = 'acme'")
