"""Producer keys: credentials, signatures, and why one tenant's key cannot sign for another."""

from __future__ import annotations

import pytest

from shared.producer_keys import INTERNAL_KEY_ID, ProducerKey, SignatureError, verify

pytestmark = pytest.mark.unit

MASTER = b"a-master-key-of-thirty-two-bytes-or-more"
VALUE = b"\xc3\x01 an avro request"


def test_a_credential_round_trips_and_its_signature_verifies_for_its_tenant() -> None:
    key = ProducerKey.derive(MASTER, "acme", "pkAbc")
    parsed = ProducerKey.parse(key.credential())
    assert parsed == key
    assert key.credential().startswith("hpk.pkAbc.")
    assert verify(MASTER, "acme", parsed.sign(VALUE), VALUE) == "pkAbc"


def test_a_key_of_one_tenant_does_not_sign_for_another() -> None:
    other_tenants_key = ProducerKey.derive(MASTER, "globex", "pkAbc")
    with pytest.raises(SignatureError, match="not made by key 'pkAbc' of tenant 'acme'"):
        verify(MASTER, "acme", other_tenants_key.sign(VALUE), VALUE)


def test_a_changed_value_or_another_master_key_fails() -> None:
    signature = ProducerKey.derive(MASTER, "acme", "pkAbc").sign(VALUE)
    with pytest.raises(SignatureError):
        verify(MASTER, "acme", signature, VALUE + b"!")
    with pytest.raises(SignatureError):
        verify(b"another-master-key-of-thirty-two-bytes", "acme", signature, VALUE)


@pytest.mark.parametrize(
    ("signature", "why"),
    [
        pytest.param(None, "no herald-signature header", id="missing"),
        pytest.param(b"v2,pkAbc,AAAA", "is not v1", id="unknown-version"),
        pytest.param(b"v1,,AAAA", "is not v1", id="no-key-id"),
        pytest.param(b"v1,pkAbc", "is not v1", id="no-mac"),
        pytest.param(b"v1,pkAbc,AAAA,extra", "is not v1", id="extra-part"),
        pytest.param(b"v1,pkAbc,!!!", "not base64url", id="mac-not-base64"),
    ],
)
def test_a_malformed_signature_says_what_is_wrong(signature: bytes | None, why: str) -> None:
    with pytest.raises(SignatureError, match=why):
        verify(MASTER, "acme", signature, VALUE)


@pytest.mark.parametrize(
    "credential",
    ["", "hpk.", "hpk.pkAbc", "hpk..c2VjcmV0", "hk_live_abc", "hpk.pkAbc.c2hvcnQ", "hpk.pkAbc.!!!"],
)
def test_a_malformed_credential_is_refused(credential: str) -> None:
    with pytest.raises(ValueError, match="producer key"):
        ProducerKey.parse(credential)


def test_herald_signs_as_internal_only_with_the_master_key() -> None:
    assert ProducerKey.internal(None, "acme") is None
    internal = ProducerKey.internal(MASTER, "acme")
    assert internal is not None
    assert internal.key_id == INTERNAL_KEY_ID
    assert verify(MASTER, "acme", internal.sign(VALUE), VALUE) == INTERNAL_KEY_ID
