"""The push stand-ins as ``make up`` runs them: their settings configure sender-push, and each accepted
push is reported as a line a person can read."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from infra.standins.push import PushStandIns
from services.sender_push.main import platform_chains
from services.sender_push.settings import PushSenderSettings
from shared.delivery import Delivered
from shared.storage.database import Pool
from shared.storage.devices import DeviceRepository
from tests.conftest import ENCRYPTOR
from tests.factories import push_delivery

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Message.token is deprecated:DeprecationWarning"),
]


@pytest.fixture
def lines() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def stand_ins(lines: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch) -> Iterator[PushStandIns]:
    with PushStandIns(line_sink=lambda name, line: lines.append((name, line))) as running:
        for name, value in running.environment().items():
            monkeypatch.setenv(name, value)
        yield running


async def test_the_stand_ins_environment_reaches_every_platform_and_each_push_is_reported(
    stand_ins: PushStandIns, lines: list[tuple[str, str]], db_pool: Pool
) -> None:
    providers = platform_chains(PushSenderSettings(), DeviceRepository(db_pool, ENCRYPTOR), None)
    ios_token = uuid.uuid4().hex * 2
    try:
        outcomes = [
            await providers.send(push_delivery(platform="android", token="fcm-token-1")),
            await providers.send(push_delivery(platform="ios", token=ios_token)),
            await providers.send(push_delivery(platform="web", token=stand_ins.web_subscription())),
        ]
    finally:
        await providers.close()

    assert [(type(o), o.provider) for o in outcomes] == [
        (Delivered, "fcm"),
        (Delivered, "apns"),
        (Delivered, "webpush"),
    ]
    assert [name for name, _ in lines] == ["fcm", "apns", "webpush"]
    assert "fcm-token-1" in lines[0][1]
    assert ios_token in lines[1][1]
    assert "It is on its way." in lines[2][1]
