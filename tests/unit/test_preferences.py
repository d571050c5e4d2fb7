"""Preferences and stored profiles as the router applies them, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.router.preferences import opted_in, opted_out, wanted_channels, with_profile
from services.router.settings import RouterSettings
from shared.messages import RoutableNotification
from shared.storage.recipients import Contact, Preference, Profile
from tests.unit.test_router import routable

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, tzinfo=UTC)
# Every level of rule for "marketing" on email, each saying something different from the next.
ALL_LEVELS = [
    Preference("*", "*", False),
    Preference("*", "email", True),
    Preference("marketing", "*", False),
    Preference("marketing", "email", True),
]


def notification(channels: list[str], category: str | None = None) -> RoutableNotification:
    value = routable("Hi", {"name": "Ada"}).value
    value["channels"] = channels
    if category is not None:
        value["metadata"]["category"] = category
    return value


def profile(**contact: str) -> Profile:
    return Profile("0b7c5c1e-8d1e-4c61-9e0a-6d1f7c2b3a4d", "ada", Contact(**contact), NOW, NOW)


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        pytest.param(ALL_LEVELS, True, id="category-and-channel-wins"),
        pytest.param(ALL_LEVELS[:3], False, id="then-category-on-any-channel"),
        pytest.param(ALL_LEVELS[:2], True, id="then-any-category-on-the-channel"),
        pytest.param(ALL_LEVELS[:1], False, id="then-any-category-on-any-channel"),
        pytest.param([], True, id="opted-in-without-a-rule"),
        pytest.param([Preference("news", "email", False), Preference("marketing", "sms", False)], True, id="others"),
    ],
)
def test_the_most_specific_rule_wins(rules: list[Preference], expected: bool) -> None:
    assert opted_in(rules, "marketing", "email") is expected
    # The order rules come in does not matter.
    assert opted_in(list(reversed(rules)), "marketing", "email") is expected


def test_a_notification_without_a_category_follows_the_any_category_rules_only() -> None:
    rules = [Preference("marketing", "email", False), Preference("*", "sms", False)]
    assert opted_in(rules, None, "email") is True
    assert opted_in(rules, None, "sms") is False


def test_opted_out_channels_are_dropped_keeping_the_request_order() -> None:
    rules = [Preference("marketing", "email", False), Preference("*", "push", False)]
    assert wanted_channels(notification(["push", "email", "sms"], "marketing"), rules, ()) == ["sms"]
    assert wanted_channels(notification(["push", "email", "sms"], "receipts"), rules, ()) == ["email", "sms"]
    assert wanted_channels(notification(["email"], "marketing"), rules, ()) == []


def test_a_mandatory_category_ignores_preferences() -> None:
    rules = [Preference("*", "*", False)]
    assert wanted_channels(notification(["email", "sms"], "security"), rules, {"security"}) == ["email", "sms"]
    assert wanted_channels(notification(["email", "sms"], "marketing"), rules, {"security"}) == []
    assert wanted_channels(notification(["email"]), rules, {"security"}) == []


def test_the_profile_fills_what_the_request_lacks_and_the_request_wins() -> None:
    stored = profile(email="stored@example.com", phone="+442079460958", locale="fr", timezone="Europe/Paris")
    bare = notification(["email"])
    bare["recipient"] = {"user_id": "ada", "email": None, "phone": None, "locale": None, "webhook_url": None}
    completed = with_profile(bare, stored)
    assert completed["recipient"] == {
        "user_id": "ada",
        "email": "stored@example.com",
        "phone": "+442079460958",
        "locale": "fr",
        "webhook_url": None,
    }
    assert bare["recipient"]["email"] is None, "the consumed message is left as it came"

    given = notification(["email"])
    given["recipient"].update({"user_id": "ada", "phone": "+14155550100", "locale": "en"})
    assert with_profile(given, stored)["recipient"] == {
        "user_id": "ada",
        "email": "ada@example.com",
        "phone": "+14155550100",
        "locale": "en",
        "webhook_url": None,
    }
    assert with_profile(given, None) is given


def test_an_opt_out_says_which_category_and_channels() -> None:
    assert opted_out(notification(["email", "sms"], "marketing")) == (
        "the recipient opted out of category 'marketing' on email, sms"
    )
    assert opted_out(notification(["push"])) == "the recipient opted out of notifications without a category on push"


@pytest.mark.usefixtures("clean_environment")
def test_mandatory_categories_are_a_comma_separated_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert RouterSettings().mandatory_categories == []
    monkeypatch.setenv("HERALD_MANDATORY_CATEGORIES", "security, password_reset")
    assert RouterSettings().mandatory_categories == ["security", "password_reset"]
