"""Where archives go: a local folder (``file:///path``) or an S3-compatible bucket (``s3://bucket/prefix``).

A store's ``put`` returns only once the object is durable: the file fsynced and renamed from a
temporary name (its folder fsynced too), or the upload acknowledged by S3. It blocks: the archiver
calls it from a worker thread.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol
from urllib.parse import unquote, urlsplit

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# An archive object is a gzip file of JSON lines.
CONTENT_TYPE = "application/gzip"


@dataclass(frozen=True)
class ArchiveLocation:
    """A parsed ``HERALD_ARCHIVE_URL``: a folder, or a bucket and a key prefix ("" for none)."""

    scheme: Literal["file", "s3"]
    root: str
    prefix: str = ""


def parse_archive_url(url: str) -> ArchiveLocation:
    """``file:///an/absolute/folder`` or ``s3://bucket[/prefix]``; raises ValueError for anything else."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost") or not path.startswith("/"):
            raise ValueError("a file URL names an absolute folder: file:///var/lib/herald/archives")
        return ArchiveLocation("file", path.rstrip("/") or "/")
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError("an S3 URL names its bucket: s3://bucket/prefix")
        return ArchiveLocation("s3", parts.netloc, parts.path.strip("/"))
    raise ValueError("the archive URL must start with file:// or s3://")


class ArchiveStore(Protocol):
    """Writes archive objects durably."""

    def put(self, name: str, data: bytes) -> str:
        """Store ``data`` as ``name`` (a relative, ``/``-separated path); returns where it went."""
        ...


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class FolderStore:
    """Archive objects as files under ``root``; a file is never seen half-written."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def put(self, name: str, data: bytes) -> str:
        target = self._root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
        try:
            with partial.open("xb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            raise
        # The rename, and any folder made for it, last only once their folders are synced too.
        folder = target.parent
        while True:
            _fsync_directory(folder)
            if folder == self._root or folder == folder.parent:
                break
            folder = folder.parent
        return str(target)


class S3Store:
    """Archive objects in a bucket, under ``prefix``; ``put`` returns once S3 acknowledged the upload."""

    def __init__(self, bucket: str, prefix: str, client: S3Client) -> None:
        self._bucket = bucket
        self._prefix = prefix
        self._client = client

    def put(self, name: str, data: bytes) -> str:
        key = f"{self._prefix}/{name}" if self._prefix else name
        # botocore adds a checksum of the body, which S3 verifies before it answers.
        self._client.put_object(Bucket=self._bucket, Key=key, Body=data, ContentType=CONTENT_TYPE)
        return f"s3://{self._bucket}/{key}"


def open_store(url: str, *, endpoint_url: str | None = None, region: str | None = None) -> ArchiveStore:
    """The store ``url`` names; an S3 client authenticates with boto3's usual chain (AWS_*, IAM role)."""
    location = parse_archive_url(url)
    if location.scheme == "file":
        return FolderStore(Path(location.root))
    config = Config(
        connect_timeout=10,
        read_timeout=60,
        retries={"mode": "standard", "max_attempts": 3},
        # S3-compatible stores (MinIO...) address buckets by path, not by host name.
        s3={"addressing_style": "path" if endpoint_url else "auto"},
    )
    client: S3Client = boto3.session.Session().client(
        "s3", region_name=region, endpoint_url=endpoint_url, config=config
    )
    return S3Store(location.root, location.prefix, client)
