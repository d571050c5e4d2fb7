"""The archiver's settings (``HERALD_*``)."""

from __future__ import annotations

from pydantic import Field, field_validator

from services.archiver.store import parse_archive_url
from shared.config import HeraldSettings, ops_port_field


class ArchiverSettings(HeraldSettings):
    retention_days: int = Field(
        default=90,
        ge=1,
        description=(
            "A notification is archived once its last update is this many days old (and no delayed job waits for it)."
        ),
    )
    archive_url: str = Field(
        description="Required. Where archives go: file:///an/absolute/folder or s3://bucket/optional/prefix."
    )
    archive_endpoint_url: str | None = Field(
        default=None,
        description=(
            "Another S3 endpoint than AWS's: MinIO, Ceph, a VPC endpoint (moto in tests). Credentials come from "
            "boto3's chain (AWS_* variables, an IAM role)."
        ),
    )
    archive_region: str | None = Field(
        default=None, description="The bucket's region; unset: boto3's own chain (AWS_REGION, the profile...)."
    )
    archive_batch_size: int = Field(
        default=1000,
        ge=1,
        le=10_000,
        description="Notifications per transaction (and at most that many per archive object).",
    )
    archive_interval_s: float = Field(
        default=0.0,
        ge=0.0,
        description=(
            "0: one pass, then exit (a Kubernetes CronJob); more: a pass every this many seconds, as a service "
            "with an operations endpoint (make up and compose: 3600)."
        ),
    )
    ops_port: int = ops_port_field(9110)

    @field_validator("archive_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parse_archive_url(value)
        return value
