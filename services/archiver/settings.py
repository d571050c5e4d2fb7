"""The archiver's settings (``HERALD_*``)."""

from __future__ import annotations

from pydantic import Field, field_validator

from services.archiver.store import parse_archive_url
from shared.config import HeraldSettings


class ArchiverSettings(HeraldSettings):
    # A notification is archived once its last update is this many days old (and nothing waits for it).
    retention_days: int = Field(default=90, ge=1)
    # Where archives go: file:///an/absolute/folder or s3://bucket/optional/prefix.
    archive_url: str
    # Another S3 endpoint than AWS's: MinIO, Ceph, a VPC endpoint (moto in tests).
    archive_endpoint_url: str | None = None
    # The bucket's region; unset: boto3's own chain (AWS_REGION, the profile...).
    archive_region: str | None = None
    # Notifications per transaction (and at most that many per archive object).
    archive_batch_size: int = Field(default=1000, ge=1, le=10_000)
    # 0: one pass, then exit (a Kubernetes CronJob); more: a pass every this many seconds (a service).
    archive_interval_s: float = Field(default=0.0, ge=0.0)
    ops_port: int = 9110

    @field_validator("archive_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parse_archive_url(value)
        return value
