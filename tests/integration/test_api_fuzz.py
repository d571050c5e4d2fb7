"""Fuzzes the gateway's HTTP API with schemathesis against the OpenAPI document the gateway itself serves.

Every operation of ``/openapi.json`` gets generated requests, valid and invalid (NUL bytes, huge numbers,
wrong types, missing fields), sent as the dev tenant's admin key to the real app (Postgres, Redis, the
broker). Each answer must be documented for its operation: no 5xx, a documented status, content type,
headers and body. The run is derandomized, so a failure reproduces, and bounded: at least
:data:`MIN_CASES` cases in all, counted, so a shrinking spec or generator cannot quietly weaken it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from pydantic import SecretStr
from schemathesis import Case
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.schemas import BaseSchema

from services.gateway.app import create_app
from services.gateway.http.idempotency_store import HEADER, InvalidKey, parse_key
from services.gateway.settings import GatewaySettings
from tests.callback_signing import TOPIC_ARN, TWILIO_TOKEN, SendGridSigner
from tests.integration.conftest import auth

pytestmark = [pytest.mark.integration, pytest.mark.fuzz, pytest.mark.slow]

MIN_CASES = 1000
# Generated cases per operation beyond the even share: some operations run out of distinct inputs early.
HEADROOM = 1.5
# The requests each operation was sent, by its label ("POST /api/v1/notifications").
cases_run: Counter[str] = Counter()


@pytest.fixture
def gateway_api(gateway_settings: GatewaySettings, request: pytest.FixtureRequest) -> Iterator[BaseSchema]:
    """The schema the gateway serves at /openapi.json, bound to the running app; asserts the bound afterwards."""
    # schemathesis 4's lazy schema renames the test per operation through `_nodeid`, which pytest 9.2 dropped.
    request.node._nodeid = request.node.nodeid
    settings = gateway_settings.model_copy(
        update={
            # The production default: the conftest's 4 KiB would refuse much schema-valid data as too large.
            "max_body_bytes": GatewaySettings.model_fields["max_body_bytes"].default,
            # Every route live, the provider callbacks and tracking links too: unsigned input reaches them.
            "tracking_signing_key": SecretStr("fuzz-tracking-signing-key-0123456789"),
            "twilio_auth_token": SecretStr(TWILIO_TOKEN),
            "sendgrid_webhook_public_key": SendGridSigner().public_key,
            "ses_sns_topic_arns": [TOPIC_ARN],
            "webhook_signing_key": SecretStr("fuzz-webhook-signing-key-0123456789"),
            # No DNS look-ups of generated host names: the run stays hermetic and its time bounded.
            "webhook_allow_private_networks": True,
        }
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(settings))
    operations = sum(1 for _ in schema.get_all_operations())
    schema.config.generation.update(
        max_examples=math.ceil(MIN_CASES * HEADROOM / operations),
        deterministic=True,
        database="none",
        # The credential is the test's (the admin key): not generated, so negative cases never garble it.
        with_security_parameters=False,
        # Unknown query parameters are ignored, as most HTTP APIs do: not a fault.
        allow_extra_parameters=False,
    )
    checks = schema.config.checks
    # Schema-valid data the API refuses: rules across fields (an sms needs a phone) that JSON Schema does not
    # state answer a documented 422, and a page cursor is opaque, so any made-up one is refused.
    checks.positive_data_acceptance.expected_statuses = [*checks.positive_data_acceptance.expected_statuses, "422"]
    # An oversized body is refused as too large before anything reads it.
    checks.negative_data_rejection.expected_statuses = [*checks.negative_data_rejection.expected_statuses, "413"]
    cases_run.clear()
    try:
        yield schema
    finally:
        # schemathesis runs the app's lifespan itself: end it (pool, producer) before the database is dropped.
        shutdown_lifespans()
    total = sum(cases_run.values())
    print(f"\nschemathesis: {total} cases over {len(cases_run)} of {operations} operations")
    assert total >= MIN_CASES, f"only {total} cases ran: {dict(cases_run)}"


api = schemathesis.pytest.from_fixture("gateway_api")


@pytest.mark.timeout(300)
# Untraced: line coverage doubles the time Hypothesis takes to generate cases.
@pytest.mark.no_cover
@api.parametrize()
def test_every_answer_is_documented(case: Case[Any]) -> None:
    cases_run[case.operation.label] += 1
    key = case.headers.get(HEADER)
    if key is not None and _valid_key(key):
        # A valid key once per case: generated keys repeat, and a key reused with another body is rightly a 422.
        case.headers[HEADER] = f"fuzz-{sum(cases_run.values())}"
    case.call_and_validate(headers=auth())


def _valid_key(value: str) -> bool:
    try:
        parse_key(value)
    except InvalidKey:
        return False
    return True
