"""Avro single-object encoding of Herald's Kafka messages.

Every message is ``C3 01`` + the writer schema's 8-byte CRC-64-AVRO fingerprint (little-endian) +
the Avro binary body, as the Avro specification defines it. A reader therefore knows which schema
wrote a message without a registry server: it keeps the current version of each contract and every
earlier version under ``schemas/history/``, and resolves old data into the current shape.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import fastavro
import orjson
from fastavro.schema import fingerprint, to_parsing_canonical_form

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"
HISTORY_DIR = SCHEMA_DIR / "history"
MAGIC = b"\xc3\x01"
HEADER_SIZE = len(MAGIC) + 8

RecordT = TypeVar("RecordT", bound=Mapping[str, Any])


class UndecodableMessage(ValueError):
    """The bytes are not a single-object-encoded record of the expected contract."""


def load_schema(path: Path) -> Any:
    """Parse one ``.avsc`` file with fastavro (named types stay local to the file)."""
    return fastavro.parse_schema(orjson.loads(path.read_bytes()), named_schemas={})


def schema_fingerprint(parsed: Any) -> bytes:
    """The CRC-64-AVRO fingerprint of a parsed schema, in the byte order single-object encoding uses."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


@dataclass(frozen=True)
class Contract(Generic[RecordT]):
    """One message type: its current schema and every schema it can still read from."""

    name: str
    schema: Any
    fingerprint: bytes
    readable: Mapping[bytes, Any] = field(repr=False)

    def encode(self, record: RecordT) -> bytes:
        """Single-object encode ``record`` with the current schema."""
        buffer = io.BytesIO()
        buffer.write(MAGIC)
        buffer.write(self.fingerprint)
        fastavro.schemaless_writer(buffer, self.schema, record)
        return buffer.getvalue()

    def decode(self, data: bytes) -> RecordT:
        """Decode bytes written with the current or any earlier schema into the current shape.

        Raises:
            UndecodableMessage: not single-object encoded, an unknown writer schema, or a corrupt body.
        """
        if len(data) < HEADER_SIZE or data[:2] != MAGIC:
            raise UndecodableMessage(f"{self.name}: not Avro single-object encoded")
        writer = self.readable.get(data[2:HEADER_SIZE])
        if writer is None:
            raise UndecodableMessage(f"{self.name}: unknown writer schema {data[2:HEADER_SIZE].hex()}")
        body = io.BytesIO(data[HEADER_SIZE:])
        try:
            # Same writer and reader: skip schema resolution, which costs as much as the decoding.
            reader = None if writer is self.schema else self.schema
            record = fastavro.schemaless_reader(body, writer, reader)
        except Exception as error:  # fastavro raises many types for corrupt input
            raise UndecodableMessage(f"{self.name}: corrupt body ({error})") from error
        if body.tell() != len(data) - HEADER_SIZE:
            raise UndecodableMessage(f"{self.name}: trailing bytes after the record")
        return cast(RecordT, record)


@cache
def contract(name: str) -> Contract[Any]:
    """The contract ``schemas/<name>.avsc`` with its history ``schemas/history/<name>/*.avsc``."""
    current = load_schema(SCHEMA_DIR / f"{name}.avsc")
    readable = {schema_fingerprint(current): current}
    for old in sorted((HISTORY_DIR / name).glob("*.avsc")):
        parsed = load_schema(old)
        readable.setdefault(schema_fingerprint(parsed), parsed)
    return Contract(name=name, schema=current, fingerprint=schema_fingerprint(current), readable=readable)


@cache
def _contract_names() -> tuple[str, ...]:
    return tuple(sorted(path.stem for path in SCHEMA_DIR.glob("*.avsc")))


def decode_known(data: bytes) -> tuple[str, Any] | None:
    """The name of the contract that wrote ``data`` (at any released version) and the record, or None."""
    for name in _contract_names():
        codec = contract(name)
        if data[2:HEADER_SIZE] in codec.readable:
            try:
                return name, codec.decode(data)
            except UndecodableMessage:
                return None
    return None
