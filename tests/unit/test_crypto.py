"""shared.crypto: AES-GCM sealing bound to its context, key rotation, blind indexes, settings errors."""

from __future__ import annotations

import base64

import pytest

from shared.config import ConfigurationError, HeraldSettings, load_settings
from shared.crypto import Context, DecryptionError, Encryptor, generate_key, parse_keys

pytestmark = pytest.mark.unit

OLD, NEW, INDEX = generate_key(), generate_key(), base64.b64decode(generate_key())
TOKEN = Context("devices.token", "acme")


def encryptor(keys: str) -> Encryptor:
    return Encryptor(parse_keys(keys), INDEX)


def test_a_sealed_value_opens_in_its_context_and_hides_the_plaintext() -> None:
    sealed = encryptor(f"old:{OLD}").seal_text("device-token-123", TOKEN)

    assert b"device-token-123" not in sealed
    assert encryptor(f"old:{OLD}").open_text(sealed, TOKEN) == "device-token-123"
    # Randomised: the same value seals differently each time.
    assert encryptor(f"old:{OLD}").seal_text("device-token-123", TOKEN) != sealed


@pytest.mark.parametrize("position", [0, 1, 5, 20, -1])
def test_a_tampered_value_does_not_open(position: int) -> None:
    sealed = bytearray(encryptor(f"old:{OLD}").seal_text("device-token-123", TOKEN))
    sealed[position] ^= 0x01

    with pytest.raises(DecryptionError):
        encryptor(f"old:{OLD}").open(bytes(sealed), TOKEN)


@pytest.mark.parametrize(
    "elsewhere", [Context("devices.token", "globex"), Context("suppressions.address", "acme"), Context("x", None)]
)
def test_a_value_moved_to_another_tenant_or_column_does_not_open(elsewhere: Context) -> None:
    sealed = encryptor(f"old:{OLD}").seal_text("device-token-123", TOKEN)

    with pytest.raises(DecryptionError):
        encryptor(f"old:{OLD}").open(sealed, elsewhere)


def test_rotation_old_values_open_after_a_new_primary_key_is_added_and_resealing_moves_them() -> None:
    before = encryptor(f"old:{OLD}").seal_text("ada@example.com", TOKEN)
    rotating = encryptor(f"new:{NEW},old:{OLD}")

    assert rotating.open_text(before, TOKEN) == "ada@example.com"
    assert not rotating.is_current(before)
    resealed = rotating.seal_text(rotating.open_text(before, TOKEN), TOKEN)
    assert rotating.is_current(resealed)
    assert Encryptor.key_id(resealed) == "new"
    # Once the old key is removed, only resealed values open.
    after = encryptor(f"new:{NEW}")
    assert after.open_text(resealed, TOKEN) == "ada@example.com"
    with pytest.raises(DecryptionError, match="'old'"):
        after.open(before, TOKEN)


def test_blind_indexes_are_deterministic_keyed_and_per_context() -> None:
    one = encryptor(f"old:{OLD}")

    assert one.blind_index("tok", TOKEN) == encryptor(f"new:{NEW}").blind_index("tok", TOKEN)
    assert one.blind_index("tok", TOKEN) != one.blind_index("tok", Context("devices.token", "globex"))
    assert one.blind_index("tok", TOKEN) != Encryptor(parse_keys(f"old:{OLD}"), b"x" * 32).blind_index("tok", TOKEN)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("HERALD_ENCRYPTION_KEYS", "no-colon", "is not '<key id>:<base64 key>'"),
        ("HERALD_ENCRYPTION_KEYS", "k1:" + base64.b64encode(b"short").decode(), "must be 32 bytes"),
        ("HERALD_ENCRYPTION_KEYS", "k1:not base64!", "not valid base64"),
        # Named: the keys are random, and pytest-xdist workers must all see the same test ids.
        pytest.param("HERALD_ENCRYPTION_KEYS", f"k1:{OLD},k1:{NEW}", "listed twice", id="k1-twice"),
        ("HERALD_BLIND_INDEX_KEY", "c2hvcnQ=", "must be 32 bytes"),
    ],
)
def test_a_bad_key_setting_names_the_variable_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigurationError):
        load_settings(HeraldSettings)

    error = capsys.readouterr().err
    assert variable in error
    assert message in error
    assert value not in error


def test_a_service_storing_personal_data_refuses_to_start_without_keys(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("HERALD_ENCRYPTION_KEYS", raising=False)

    with pytest.raises(ConfigurationError):
        Encryptor.from_settings(HeraldSettings(_env_file=None))  # type: ignore[call-arg]

    assert "HERALD_ENCRYPTION_KEYS" in capsys.readouterr().err
