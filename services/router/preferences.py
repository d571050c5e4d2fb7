"""What a stored recipient changes about a notification before its channel is chosen.

**Profile.** A request naming a ``recipient.user_id`` gets the email, phone and locale it lacks from
that user's stored profile; what the request gives wins.

**Preferences.** A notification's category is its ``metadata["category"]`` (``metadata["type"]`` is
another thing: it picks the retry policy). A user's rules say whether they want a category on a
channel, either one possibly ``*`` (any). The most specific rule wins: (category, channel), then
(category, ``*``), then (``*``, channel), then (``*``, ``*``); without a rule the user is opted in. A
notification without a category is governed by the ``*`` category's rules alone. The channels the
user opted out of are dropped from the request's list, keeping its order.

**Mandatory categories** (``HERALD_MANDATORY_CATEGORIES``: password resets, security alerts) ignore
preferences. It is the operator's list rather than a flag on the request, so a sender cannot mark
its newsletter mandatory. Suppressed addresses are still never sent to.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from shared.messages import Recipient, RoutableNotification
from shared.storage.recipients import ANY, Preference, Profile

CATEGORY = "category"


def category_of(notification: RoutableNotification) -> str | None:
    """The notification's category (its ``metadata["category"]``), None without one."""
    return notification["metadata"].get(CATEGORY)


def opted_in(preferences: Iterable[Preference], category: str | None, channel: str) -> bool:
    """Whether the user wants ``category`` on ``channel``: the most specific rule, else yes."""
    rules = {(rule.category, rule.channel): rule.enabled for rule in preferences}
    for key in ((category, channel), (category, ANY), (ANY, channel), (ANY, ANY)):
        if key in rules:
            return rules[key]
    return True


def wanted_channels(
    notification: RoutableNotification, preferences: Sequence[Preference], mandatory: Collection[str]
) -> list[str]:
    """The notification's channels its recipient did not opt out of, in the request's order."""
    category = category_of(notification)
    if category is not None and category in mandatory:
        return list(notification["channels"])
    return [channel for channel in notification["channels"] if opted_in(preferences, category, channel)]


def with_profile(notification: RoutableNotification, profile: Profile | None) -> RoutableNotification:
    """``notification`` with its recipient completed from the stored ``profile``: the request's own
    email, phone and locale win."""
    if profile is None:
        return notification
    recipient, contact = notification["recipient"], profile.contact
    completed: Recipient = {
        **recipient,
        "email": recipient["email"] or contact.email,
        "phone": recipient["phone"] or contact.phone,
        "locale": recipient["locale"] or contact.locale,
    }
    return {**notification, "recipient": completed}


def opted_out(notification: RoutableNotification) -> str:
    """Why a notification whose every channel its recipient opted out of is not sent."""
    category = category_of(notification)
    what = "notifications without a category" if category is None else f"category {category!r}"
    return f"the recipient opted out of {what} on {', '.join(notification['channels'])}"
