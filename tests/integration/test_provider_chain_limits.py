"""The provider chain with its shared Redis rate limit, and the email sender's chain from configuration."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from services.sender_email.settings import EmailSenderSettings
from services.sender_email.smtp import SmtpProvider
from shared.config import HeraldSettings
from shared.delivery import Delivered, Retry
from shared.providers.base import ProviderConfigError
from shared.providers.breaker import BreakerPolicy
from shared.providers.chain import ProviderChain, ProviderLimits
from shared.providers.factory import build_chain
from shared.providers.ratelimit import SendRateLimiter
from tests.factories import DELIVERY, ScriptedProvider

pytestmark = pytest.mark.integration


async def test_a_provider_over_its_rate_is_skipped_for_the_next(settings: HeraldSettings, redis: Redis) -> None:
    limiter = SendRateLimiter(redis, f"{settings.redis_namespace}:ratelimit")
    limited = ScriptedProvider("limited", [Delivered("limited")])
    spare = ScriptedProvider("spare", [Delivered("spare")])
    providers: ProviderChain[Any] = ProviderChain(
        [limited, spare],
        breaker_policy=BreakerPolicy(),
        # One send every 10 s: the second must wait far longer than the chain waits in place.
        limits={"limited": ProviderLimits(rate_per_s=0.1, burst=1)},
        limiter=limiter,
    )
    assert await providers.send(DELIVERY) == Delivered("limited")
    assert await providers.send(DELIVERY) == Delivered("spare")
    assert limited.calls == 1


async def test_a_rate_limited_chain_asks_to_retry_after_the_wait(settings: HeraldSettings, redis: Redis) -> None:
    limiter = SendRateLimiter(redis, f"{settings.redis_namespace}:ratelimit")
    only = ScriptedProvider("only", [Delivered("only")])
    providers: ProviderChain[Any] = ProviderChain(
        [only],
        breaker_policy=BreakerPolicy(),
        limits={"only": ProviderLimits(rate_per_s=0.1, burst=1)},
        limiter=limiter,
    )
    await providers.send(DELIVERY)
    outcome = await providers.send(DELIVERY)
    assert isinstance(outcome, Retry)
    assert outcome.reason == "rate_limited"
    assert outcome.after_s is not None
    assert 1 < outcome.after_s <= 10


def test_the_email_chain_is_built_from_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_EMAIL_PROVIDERS", " smtp ")
    monkeypatch.setenv("HERALD_PROVIDER_RATE_LIMITS", '{"smtp": 250}')
    settings = EmailSenderSettings()
    assert settings.email_providers == ["smtp"]
    chain = build_chain("email", settings.email_providers, {"smtp": lambda: SmtpProvider(settings)}, settings, None)
    assert chain.name == "smtp"


@pytest.mark.parametrize(
    ("names", "overrides", "message"),
    [
        (["sendgrid"], {}, "HERALD_EMAIL_PROVIDERS: unknown provider"),
        ([], {}, "HERALD_EMAIL_PROVIDERS: list at least one provider"),
        (["smtp"], {"smtp_use_tls": True, "smtp_start_tls": True}, "choose one"),
        (["smtp"], {"smtp_username": "herald"}, "give both or neither"),
    ],
)
def test_a_chain_that_cannot_work_is_refused_at_start_up(
    names: list[str], overrides: dict[str, Any], message: str
) -> None:
    settings = EmailSenderSettings(**overrides)
    with pytest.raises(ProviderConfigError, match=message):
        build_chain("email", names, {"smtp": lambda: SmtpProvider(settings)}, settings, None)
