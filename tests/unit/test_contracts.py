"""The Avro contracts: single-object encoding, typed shapes, a release for every change, and evolution against every
released version."""

from __future__ import annotations

import io
import re
import shutil
import typing
from datetime import datetime
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pytest
from fastavro.schema import to_parsing_canonical_form
from fastavro.utils import generate_many

from shared import messages
from shared.codec import HISTORY_DIR, MAGIC, SCHEMA_DIR, Contract, UndecodableMessage, contract, load_schema
from shared.codec import schema_fingerprint as fingerprint

pytestmark = pytest.mark.unit

NAMES = sorted(path.stem for path in SCHEMA_DIR.glob("*.avsc"))
HISTORY = sorted(HISTORY_DIR.glob("*/*.avsc"))
TYPED = {
    "NotificationRequest": messages.NotificationRequest,
    "RoutableNotification": messages.RoutableNotification,
    "EmailDelivery": messages.EmailDelivery,
    "SmsDelivery": messages.SmsDelivery,
    "PushDelivery": messages.PushDelivery,
    "WebhookDelivery": messages.WebhookDelivery,
    "StatusEvent": messages.StatusEvent,
    "DelayedMessage": messages.DelayedMessage,
    "DeadLetter": messages.DeadLetter,
}


def encode_with(schema: Any, record: Any) -> bytes:
    """Single-object encode with an arbitrary (e.g. older) schema, as an old producer would."""
    buffer = io.BytesIO()
    buffer.write(MAGIC + fingerprint(schema))
    fastavro.schemaless_writer(buffer, schema, record)
    return buffer.getvalue()


def plain(value: object) -> object:
    """Timestamps as epoch milliseconds (fastavro's generator writes longs, its reader returns datetimes)."""
    if isinstance(value, datetime):
        return round(value.timestamp() * 1000)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def as_written(decoded: Any, written: Any) -> Any:
    """``decoded`` cut down to the fields the writer knew, at every depth of nested records."""
    if isinstance(written, dict) and isinstance(decoded, dict):
        return {key: as_written(decoded[key], value) for key, value in written.items()}
    return decoded


def test_every_schema_has_a_typed_shape() -> None:
    assert set(NAMES) == set(TYPED)


@pytest.mark.parametrize("name", NAMES)
def test_typed_shape_names_exactly_the_schema_fields(name: str) -> None:
    schema = load_schema(SCHEMA_DIR / f"{name}.avsc")
    assert set(typing.get_type_hints(TYPED[name])) == {field["name"] for field in schema["fields"]}


@pytest.mark.parametrize("name", NAMES)
def test_round_trip(name: str) -> None:
    codec = contract(name)
    for record in generate_many(codec.schema, 20):
        data = codec.encode(record)
        assert data[:2] == b"\xc3\x01"
        assert data[2:10] == codec.fingerprint
        assert plain(codec.decode(data)) == plain(record)


@pytest.mark.parametrize("path", HISTORY, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_current_schema_reads_every_released_version(path: Path) -> None:
    old = load_schema(path)
    codec = contract(path.parent.name)
    for record in generate_many(old, 20):
        decoded = codec.decode(encode_with(old, record))
        # Every field the old writer had arrives unchanged (new fields, at any depth, take their defaults).
        assert plain(as_written(decoded, record)) == plain(record)


def releases(name: str, history_dir: Path = HISTORY_DIR) -> list[Path]:
    """``history/<name>/v1.avsc`` to ``vN.avsc``, oldest first."""
    return sorted((history_dir / name).glob("v*.avsc"), key=lambda path: int(path.stem[1:]))


def unreleased_change(name: str, schema_dir: Path = SCHEMA_DIR, history_dir: Path = HISTORY_DIR) -> str | None:
    """What the engineer must do when ``<name>.avsc`` is not its newest release, else None.

    Schemas compare in Parsing Canonical Form, which is what the fingerprint covers: a changed ``doc`` or
    ``default`` is the same version on the wire, a changed field a new one.
    """
    versions = releases(name, history_dir)
    current = to_parsing_canonical_form(load_schema(schema_dir / f"{name}.avsc"))
    if versions and to_parsing_canonical_form(load_schema(versions[-1])) == current:
        return None
    newest = f"schemas/history/{name}/{versions[-1].name}, its newest release" if versions else "no release"
    following = int(versions[-1].stem[1:]) + 1 if versions else 1
    return (
        f"schemas/{name}.avsc differs from {newest}: copy it to schemas/history/{name}/v{following}.avsc "
        "(schemas/README.md, Changing a schema)"
    )


@pytest.mark.parametrize("name", NAMES)
def test_every_schema_is_its_newest_release(name: str) -> None:
    problem = unreleased_change(name)
    assert problem is None, problem


def schemas_with(tmp_path: Path, name: str, schema: Any) -> Path:
    """A copy of ``schemas/`` (with its history) in which ``<name>.avsc`` is ``schema``."""
    shutil.copytree(SCHEMA_DIR, tmp_path, dirs_exist_ok=True)
    (tmp_path / f"{name}.avsc").write_bytes(orjson.dumps(schema))
    return tmp_path


def test_a_schema_changed_without_its_release_is_caught(tmp_path: Path) -> None:
    schema = orjson.loads((SCHEMA_DIR / "StatusEvent.avsc").read_bytes())
    added = {"name": "region", "type": "string", "default": "eu"}
    changed = schemas_with(tmp_path, "StatusEvent", {**schema, "fields": [*schema["fields"], added]})
    newest = releases("StatusEvent")[-1]
    following = f"v{int(newest.stem[1:]) + 1}.avsc"

    problem = unreleased_change("StatusEvent", changed, changed / "history")

    assert problem is not None
    assert f"schemas/history/StatusEvent/{newest.name}, its newest release" in problem
    assert f"copy it to schemas/history/StatusEvent/{following}" in problem
    shutil.copy(changed / "StatusEvent.avsc", changed / "history" / "StatusEvent" / following)
    assert unreleased_change("StatusEvent", changed, changed / "history") is None


def test_a_changed_doc_is_the_same_release(tmp_path: Path) -> None:
    schema = orjson.loads((SCHEMA_DIR / "StatusEvent.avsc").read_bytes())
    reworded = schemas_with(tmp_path, "StatusEvent", {**schema, "doc": "Reworded."})
    assert unreleased_change("StatusEvent", reworded, reworded / "history") is None


def test_every_release_is_numbered_from_v1_without_gaps() -> None:
    for folder in HISTORY_DIR.iterdir():
        assert folder.name in NAMES, f"schemas/history/{folder.name}/ has no schemas/{folder.name}.avsc"
        found = sorted(path.name for path in folder.iterdir())
        assert found == sorted(f"v{number}.avsc" for number in range(1, len(found) + 1)), folder.name


def test_the_readme_describes_every_schema() -> None:
    sections = re.findall(r"^### (\w+)$", (SCHEMA_DIR / "README.md").read_text(), re.MULTILINE)
    assert sorted(sections) == NAMES


def test_an_incompatible_change_is_caught() -> None:
    """A field added without a default cannot be read from old data: the evolution test would fail."""
    old = load_schema(SCHEMA_DIR / "StatusEvent.avsc")
    broken_schema = {**old, "fields": [*old["fields"], {"name": "added_without_default", "type": "string"}]}
    broken = fastavro.parse_schema(broken_schema, named_schemas={})
    codec: Contract[dict[str, object]] = Contract(
        name="StatusEvent", schema=broken, fingerprint=fingerprint(broken), readable={fingerprint(old): old}
    )
    record = next(generate_many(old, 1))
    with pytest.raises(UndecodableMessage):
        codec.decode(encode_with(old, record))


def test_an_added_field_with_default_reads_old_data() -> None:
    old = load_schema(SCHEMA_DIR / "StatusEvent.avsc")
    evolved_schema = {**old, "fields": [*old["fields"], {"name": "region", "type": "string", "default": "eu"}]}
    evolved = fastavro.parse_schema(evolved_schema, named_schemas={})
    codec: Contract[dict[str, object]] = Contract(
        name="StatusEvent", schema=evolved, fingerprint=fingerprint(evolved), readable={fingerprint(old): old}
    )
    record = next(generate_many(old, 1))
    assert plain(codec.decode(encode_with(old, record))) == plain({**record, "region": "eu"})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not Avro single-object encoded"),
        (b'{"json": true}', "not Avro single-object encoded"),
        (MAGIC + b"\x00" * 8 + b"\x02", "unknown writer schema"),
    ],
)
def test_undecodable_bytes_are_named(data: bytes, message: str) -> None:
    with pytest.raises(UndecodableMessage, match=message):
        messages.STATUS_EVENT.decode(data)


def test_truncated_and_padded_bodies_are_undecodable() -> None:
    record = next(generate_many(messages.STATUS_EVENT.schema, 1))
    data = messages.STATUS_EVENT.encode(record)
    with pytest.raises(UndecodableMessage):
        messages.STATUS_EVENT.decode(data[:-3])
    with pytest.raises(UndecodableMessage, match="trailing bytes"):
        messages.STATUS_EVENT.decode(data + b"\x00")
